"""Processing algorithm "Export model": the engine's ``export-model`` (the Fine-tuning dock's Export button), a
finished tune as one zip that Import model (dock or engine) reads back on another machine."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterFileDestination,
)

from .. import contract, workspace_index
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


class ExportModelAlgorithm(EngineAlgorithm):
    MODEL = "MODEL"
    OUTPUT = "OUTPUT"
    TUNE_ID = "TUNE_ID"

    GROUP_ID = "finetuning"
    CHOICES = {MODEL: "tuned model"}
    HELP = AlgorithmHelp(
        "Writes a finished tune as one zip: its record, TerraTorch config, deploy config, best checkpoint and model "
        "card. The Fine-tuning dock's Import (or the engine's import-model) reads it back into another workspace. "
        "The zip is written whole or not at all.",
        inputs=(("MODEL", "a finished tune of the workspace, by id"), ("OUTPUT", "the zip to write")),
        outputs=(("OUTPUT", "the zip"), ("TUNE_ID", "the exported tune's id")),
        example=qgis_process_example("export_model", "MODEL=<tune id>", "OUTPUT=/tmp/water-model.zip"))

    def name(self) -> str:
        return "export_model"

    def displayName(self) -> str:  # noqa: N802
        return "Export model"

    def createInstance(self) -> "ExportModelAlgorithm":  # noqa: N802
        return ExportModelAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.add_choice(self.MODEL, "Tuned model", [t["tune_id"] for t in workspace_index.models()])
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Model zip", "Zip files (*.zip)"))
        self.addOutput(QgsProcessingOutputString(self.TUNE_ID, "Tune id"))

    def build_spec(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``export-model`` spec, by the builder the Fine-tuning dock uses."""
        return contract.export_model_spec(self.parameterAsString(parameters, self.MODEL, context).strip(),
                                          self.parameterAsFileOutput(parameters, self.OUTPUT, context))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        result = self.run_engine(contract.EXPORT_MODEL, self.build_spec(parameters, context), feedback)
        if result is None:
            return {}
        summary = result["summary"]
        feedback.pushInfo(f"Model {summary['tune_id']} ({summary.get('name', '')}) exported to "
                          f"{summary['archive']}: {summary.get('bytes', 0)} bytes.")
        return {self.OUTPUT: summary["archive"], self.TUNE_ID: summary["tune_id"]}
