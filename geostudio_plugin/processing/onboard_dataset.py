"""Processing algorithm "Onboard dataset": the engine's ``onboard``, for the Model Designer and qgis_process.

Either a whole Studio onboarding payload (a JSON file), or the common single-source case field by field.
"""

from __future__ import annotations

import re
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .. import contract, credentials
from .engine_algorithm import PAYLOAD, PAYLOAD_HELP, EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example

PURPOSES = ["Segmentation", "Regression"]


def parse_categories(text: str) -> list[dict[str, Any]]:
    """'0:Not water:#d9d9d9, 1:Water:#1f78b4' -> label categories (colour optional)."""
    categories = []
    for part in filter(None, (p.strip() for p in re.split(r"[,;]", text))):
        fields = [f.strip() for f in part.split(":")]
        if len(fields) < 2:
            raise QgsProcessingException(f"Label category '{part}' needs at least id:name (e.g. 1:Water:#1f78b4).")
        categories.append({"id": fields[0], "name": fields[1], **({"color": fields[2]} if len(fields) > 2 else {})})
    return categories


class OnboardDatasetAlgorithm(EngineAlgorithm):
    PAYLOAD = PAYLOAD
    NAME = "NAME"
    SOURCE = "SOURCE"
    PURPOSE = "PURPOSE"
    LABEL_SUFFIX = "LABEL_SUFFIX"
    DATA_SUFFIX = "DATA_SUFFIX"
    MODALITY = "MODALITY"
    BANDS = "BANDS"
    CATEGORIES = "CATEGORIES"
    IGNORE_ID = "IGNORE_ID"
    CHIP_SIZE = "CHIP_SIZE"
    DATASET_ID = "DATASET_ID"
    DATASET_FOLDER = "DATASET_FOLDER"

    GROUP_ID = "datasets"
    HELP = AlgorithmHelp(
        "Turns paired image and label GeoTIFFs (a folder, a zip or tar, or a URL) into a TerraTorch-ready dataset "
        "in the GeoStudio workspace: pairing by stem, checks, a seeded 60/20/20 split, per-band statistics of the "
        "training split. Give a Studio onboarding payload, or fill the fields for one data source. To onboard from "
        "labels alone (imagery fetched by the connectors: onboarding_options.from_labels), give a payload; the "
        "credentials set in the Connectors dock are used, and so are its endpoint overrides, which win over "
        "endpoints the payload names. The new dataset appears in Fine-tune model's DATASET list.",
        inputs=((PAYLOAD, PAYLOAD_HELP + " (the Studio's onboarding v2 payload); SOURCE, when given, replaces its "
                 "dataset_url"),
                ("NAME", "the dataset's name"), ("SOURCE", "folder, zip/tar or URL of the image and label files"),
                ("PURPOSE", "Segmentation or Regression"),
                ("LABEL_SUFFIX, DATA_SUFFIX", "how label and image files end, e.g. _LabelHand.tif, _S1Hand.tif"),
                ("MODALITY", "the modality tag, e.g. S1GRD"), ("BANDS", "band names in file order, e.g. VV, VH"),
                ("CATEGORIES", "label categories 'id:name:#colour', comma separated"),
                ("IGNORE_ID", "a label value that is not a class (-1: none)"),
                ("CHIP_SIZE", "cut scenes into chips of this size (0: keep them)")),
        outputs=(("DATASET_ID", "the new dataset's id"), ("DATASET_FOLDER", "its folder in the workspace")),
        example=qgis_process_example(
            "onboard_dataset", "'NAME=water'", "SOURCE=resources/sample_data/sen1floods11/train",
            "LABEL_SUFFIX=_LabelHand.tif", "DATA_SUFFIX=_S1Hand.tif", "MODALITY=S1GRD", "'BANDS=VV,VH'",
            "'CATEGORIES=0:Not water:#d9d9d9,1:Water:#1f78b4'"))

    def name(self) -> str:
        return "onboard_dataset"

    def displayName(self) -> str:  # noqa: N802
        return "Onboard dataset"

    def createInstance(self) -> "OnboardDatasetAlgorithm":  # noqa: N802
        return OnboardDatasetAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.add_payload("onboarding payload")
        self.addParameter(QgsProcessingParameterString(self.NAME, "Dataset name", optional=True))
        self.addParameter(QgsProcessingParameterString(self.SOURCE, "Source: folder, zip/tar or URL", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.PURPOSE, "Purpose", PURPOSES, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(self.LABEL_SUFFIX, "Label suffix", optional=True))
        self.addParameter(QgsProcessingParameterString(self.DATA_SUFFIX, "Data suffix", optional=True))
        self.addParameter(QgsProcessingParameterString(self.MODALITY, "Modality tag", defaultValue="S2L2A"))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Band names in file order (comma separated)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString(self.CATEGORIES, "Label categories (id:name:#colour, ...)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.IGNORE_ID, "Ignore id (not a class)", defaultValue=-1,
                                                       minValue=-9999))
        self.addParameter(QgsProcessingParameterNumber(self.CHIP_SIZE, "Chip size (0 = keep scenes)", defaultValue=0,
                                                       minValue=0))
        self.addOutput(QgsProcessingOutputString(self.DATASET_ID, "Dataset id"))
        self.addOutput(QgsProcessingOutputFolder(self.DATASET_FOLDER, "Dataset folder"))

    def form(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The onboarding form: the Studio payload by the contract's one rule (SOURCE applies over it), else the
        fields."""
        studio = self.studio_payload(parameters, context)
        if studio is not None:
            source = self.parameterAsString(parameters, self.SOURCE, context).strip()
            return contract.with_studio_payload(studio, overrides={"dataset_url": source})
        bands = [b.strip() for b in self.parameterAsString(parameters, self.BANDS, context).split(",") if b.strip()]
        options: dict[str, Any] = {"ignore_id": self.parameterAsInt(parameters, self.IGNORE_ID, context)}
        chip = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        if chip:
            options["chip_size"] = chip
        return {
            "dataset_name": self.parameterAsString(parameters, self.NAME, context).strip(),
            "dataset_url": self.parameterAsString(parameters, self.SOURCE, context).strip(),
            "label_suffix": self.parameterAsString(parameters, self.LABEL_SUFFIX, context).strip(),
            "purpose": PURPOSES[self.parameterAsEnum(parameters, self.PURPOSE, context)],
            "data_sources": [{"modality_tag": self.parameterAsString(parameters, self.MODALITY, context).strip(),
                              "file_suffix": self.parameterAsString(parameters, self.DATA_SUFFIX, context).strip(),
                              "bands": [{"index": i, "band_name": b} for i, b in enumerate(bands)]}],
            "label_categories": parse_categories(self.parameterAsString(parameters, self.CATEGORIES, context)),
            "onboarding_options": options,
            "version": "v2",
        }

    def build_payload(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``onboard`` payload, with the endpoint rule the Datasets dock uses (contract.onboard_payload)."""
        return contract.onboard_payload(self.form(parameters, context), credentials.endpoints())

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        payload = self.build_payload(parameters, context)
        result = self.run_engine(contract.ONBOARD, payload, feedback, secrets=credentials.for_payload(payload))
        if result is None:
            return {}
        summary: contract.OnboardSummary = result["summary"]
        feedback.pushInfo(f"Dataset {summary['dataset_id']}: {summary['n_samples']} samples, "
                          f"splits {summary['splits']}")
        self.workspace_changed()
        return {self.DATASET_ID: summary["dataset_id"], self.DATASET_FOLDER: result["outputs"]["dataset_dir"]}
