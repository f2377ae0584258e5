"""Processing algorithm "Fine-tune model": the engine's ``tune`` on an onboarded dataset.

The same spec builder as the Fine-tuning dock (``contract.tune_spec``); template, backbone and parameters are
checked by the engine, whose errors name the allowed values (the backbones that fit a template, a parameter's
range), so this algorithm does not keep its own copy of the catalog.
"""

from __future__ import annotations

import json
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .. import compat, contract, settings, workspace_index
from .engine_algorithm import PAYLOAD, PAYLOAD_HELP, EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


class TuneModelAlgorithm(EngineAlgorithm):
    NAME = "NAME"
    DATASET = "DATASET"
    TEMPLATE = "TEMPLATE"
    BACKBONE = "BACKBONE"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    CROP_SIZE = "CROP_SIZE"
    DEVICE = "DEVICE"
    WEIGHTS = "WEIGHTS"
    PARAMETERS = "PARAMETERS"
    DRY_RUN = "DRY_RUN"
    TUNE_ID = "TUNE_ID"
    TUNE_FOLDER = "TUNE_FOLDER"
    CONFIG = "CONFIG"
    CHECKPOINT = "CHECKPOINT"

    GROUP_ID = "finetuning"
    CHOICES = {DATASET: "dataset", TEMPLATE: "template"}
    HELP = AlgorithmHelp(
        "Fine-tunes a backbone on a dataset onboarded with GeoStudio, from one of the Studio's task templates (e.g. "
        "timm_resnet_seg with timm_resnet18), with TerraTorch and Lightning in the GeoStudio engine. Extra template "
        "parameters go in 'Template parameters' as the Studio's model_parameters JSON. A dry run only writes the "
        "full TerraTorch config. The tuned model appears in the docks and in the inference algorithms' MODEL "
        "list; cancelling stops the engine (a tune stopped after an epoch is kept, resumable, in the Fine-tuning "
        "dock).",
        inputs=(("NAME", "4-30 letters, digits, '-' or '.'"),
                ("DATASET", "an onboarded dataset of the workspace, by id"),
                ("TEMPLATE", "a task template, by id (built-in or imported)"),
                ("BACKBONE", "the backbone, e.g. timm_resnet18 (the engine names those that fit the template)"),
                ("EPOCHS, BATCH_SIZE, LEARNING_RATE, CROP_SIZE", "the common training parameters"),
                ("DEVICE", "auto, cpu, cuda or mps"),
                ("WEIGHTS", "random, pretrained (Hugging Face cache) or a checkpoint file"),
                ("PARAMETERS", "any other template parameter as model_parameters JSON, e.g. "
                               '{"optimizer": {"type": "AdamW"}}'),
                ("DRY_RUN", "write the config only (applies over a payload too)"),
                (PAYLOAD, PAYLOAD_HELP + " (the Studio's tune submission: name, dataset_id, base_model_id, "
                          "tune_template_id, model_parameters); DEVICE fills its device when it names none")),
        outputs=(("TUNE_ID", "the tuned model's id (feed it to the inference algorithms' MODEL)"),
                 ("TUNE_FOLDER", "its folder in the workspace"), ("CONFIG", "the TerraTorch config"),
                 ("CHECKPOINT", "the best checkpoint (empty for a dry run)")),
        example=qgis_process_example("tune_model", "NAME=water-resnet", "DATASET=<dataset id>",
                                     "TEMPLATE=timm_resnet_seg", "BACKBONE=timm_resnet18", "EPOCHS=5", "DEVICE=1"))

    def name(self) -> str:
        return "tune_model"

    def displayName(self) -> str:  # noqa: N802
        return "Fine-tune model"

    def createInstance(self) -> "TuneModelAlgorithm":  # noqa: N802
        return TuneModelAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.addParameter(QgsProcessingParameterString(self.NAME, "Tune name (4-30 letters, digits, '-' or '.')",
                                                       defaultValue="my-tune"))
        # optional for Processing: a Studio payload may name it; build_spec refuses it missing otherwise
        self.add_choice(self.DATASET, "Dataset", [d["dataset_id"] for d in workspace_index.datasets()],
                        optional=True)
        self.add_choice(self.TEMPLATE, "Template", workspace_index.template_ids(), default="timm_resnet_seg")
        self.addParameter(QgsProcessingParameterString(self.BACKBONE, "Backbone", defaultValue="timm_resnet18"))
        integer = compat.NUMBER_INTEGER
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs", integer, defaultValue=10, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size", integer, defaultValue=4,
                                                       minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, "Learning rate", compat.NUMBER_DOUBLE,
                                                       defaultValue=6e-5, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.CROP_SIZE, "Random crop size (0 = whole chips)", integer,
                                                       defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", list(contract.DEVICES),
                                                     defaultValue=self._device_index()))
        self.addParameter(QgsProcessingParameterString(
            self.WEIGHTS, "Backbone weights: random, pretrained (from the Hugging Face cache) or a checkpoint file",
            defaultValue="random"))
        self.addParameter(QgsProcessingParameterString(self.PARAMETERS, "Template parameters (model_parameters JSON)",
                                                       optional=True, multiLine=True))
        self.addParameter(QgsProcessingParameterBoolean(self.DRY_RUN, "Dry run (write the config only)",
                                                        defaultValue=False))
        self.add_payload("tune submission")
        self.addOutput(QgsProcessingOutputString(self.TUNE_ID, "Tune id"))
        self.addOutput(QgsProcessingOutputFolder(self.TUNE_FOLDER, "Tune folder"))
        self.addOutput(QgsProcessingOutputFile(self.CONFIG, "TerraTorch config"))
        self.addOutput(QgsProcessingOutputFile(self.CHECKPOINT, "Best checkpoint"))

    @staticmethod
    def _device_index() -> int:
        device = settings.device()
        base = device.split(":")[0]
        return contract.DEVICES.index(base) if base in contract.DEVICES else 0

    def build_spec(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``tune`` spec, by the builder the Fine-tuning dock uses; or the Studio payload given in PAYLOAD, by
        the contract's one rule (DEVICE fills its device when it names none)."""
        device = contract.DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        studio = self.studio_payload(parameters, context)
        if studio is not None:
            spec = contract.with_studio_payload(studio, defaults={"device": device})
            return contract.tune_dry_run_spec(spec) if self.parameterAsBool(parameters, self.DRY_RUN, context) \
                else spec
        dataset = self.parameterAsString(parameters, self.DATASET, context).strip()
        if not dataset:
            raise QgsProcessingException("DATASET: pick an onboarded dataset (onboard one with Onboard dataset), or "
                                         "give a Studio payload that names its dataset_id.")
        text = self.parameterAsString(parameters, self.PARAMETERS, context).strip()
        try:
            extra = json.loads(text) if text else {}
        except ValueError as exc:
            raise QgsProcessingException(f"Template parameters are not valid JSON ({exc}); give an object such as "
                                         '{"optimizer": {"type": "AdamW"}}.') from None
        if not isinstance(extra, dict):
            raise QgsProcessingException("Template parameters must be a JSON object, such as "
                                         '{"runner": {"early_stopping_patience": 5}}.')
        spec = contract.tune_spec(
            self.parameterAsString(parameters, self.NAME, context).strip(),
            dataset,
            self.parameterAsString(parameters, self.BACKBONE, context).strip(),
            self.parameterAsString(parameters, self.TEMPLATE, context).strip(),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            crop_size=self.parameterAsInt(parameters, self.CROP_SIZE, context) or None,
            device=device,
            model_parameters=extra, weights=self.parameterAsString(parameters, self.WEIGHTS, context))
        if self.parameterAsBool(parameters, self.DRY_RUN, context):
            spec = contract.tune_dry_run_spec(spec)
        return spec

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        result = self.run_engine(contract.TUNE, self.build_spec(parameters, context), feedback)
        if result is None:
            return {}
        summary: contract.TuneSummary = result["summary"]
        outputs = result.get("outputs") or {}
        if summary.get("status") == contract.TUNE_DRY_RUN:
            feedback.pushInfo(f"Dry run {summary['tune_id']}: config written to {outputs.get('config', '')}.")
        else:
            self.workspace_changed()
            loss = summary.get("best_val_loss")
            feedback.pushInfo(f"Tune {summary['tune_id']} finished: {summary.get('epochs_run')} epochs on "
                              f"{summary.get('device')}, best val/loss {loss if loss is None else round(loss, 4)}.")
        return {self.TUNE_ID: summary["tune_id"], self.TUNE_FOLDER: outputs.get("tune_dir", ""),
                self.CONFIG: outputs.get("config", ""), self.CHECKPOINT: outputs.get("checkpoint", "")}
