"""Processing algorithm "Run inference on raster layer": the engine's ``infer`` on one raster."""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .. import contract, layers, qgis_inputs, settings, workspace_index
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


class _StylePrediction(QgsProcessingLayerPostProcessorInterface):
    """Applied on the main thread when QGIS loads the output layer."""

    def __init__(self, style: Optional[dict[str, Any]]) -> None:
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802, ANN001 - QGIS API
        layers.apply_style(layer, self.style)


class InferRasterAlgorithm(EngineAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    EXTENT = "EXTENT"
    OUTPUT = "OUTPUT"

    _post_processors: list[_StylePrediction] = []  # QGIS does not own them; keep them alive

    GROUP_ID = "inference"
    CHOICES = {"MODEL": "tuned model"}
    HELP = AlgorithmHelp(
        "Runs a model fine-tuned with GeoStudio on a raster layer (optionally only inside an extent) and writes a "
        "georeferenced prediction GeoTIFF with the input's grid and CRS, styled with the model's classes when "
        "loaded. The work runs in the GeoStudio engine, a separate process; cancelling stops it and leaves no "
        "prediction. In batch mode each row is one raster.",
        inputs=(("INPUT", "the raster layer (its bands as the model was trained on)"),
                ("MODEL", "a finished tune of the workspace, by id (the list is read when the toolbox loads)"),
                ("EXTENT", "optional: predict only inside this extent, in any CRS"),
                ("OUTPUT", "where the prediction GeoTIFF goes")),
        outputs=(("OUTPUT", "the prediction raster: class ids (segmentation) or values (regression)"),),
        example=qgis_process_example("infer_raster", "INPUT=/data/USA_905409_S1Hand.tif", "MODEL=<tune id>",
                                     "OUTPUT=/tmp/prediction.tif"))

    def name(self) -> str:
        return "infer_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Run inference on raster layer"

    def createInstance(self) -> "InferRasterAlgorithm":  # noqa: N802
        return InferRasterAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.add_choice(self.MODEL, "Tuned model", [t["tune_id"] for t in workspace_index.models()])
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Only inside this extent", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Prediction"))

    def build_spec(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, Any]:
        """The ``infer`` spec, by the same builder and rules as the Inference dock's."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("The input raster could not be opened.")
        bbox = qgis_inputs.bbox_4326(self.parameterAsExtent(parameters, self.EXTENT, context),
                                     self.parameterAsExtentCrs(parameters, self.EXTENT, context),
                                     context.transformContext())
        return contract.infer_spec(qgis_inputs.layer_path(layer), bbox,
                                   self.parameterAsString(parameters, self.MODEL, context).strip(), settings.device(),
                                   description=layer.name(),
                                   output_path=self.parameterAsOutputLayer(parameters, self.OUTPUT, context))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        spec = self.build_spec(parameters, context)
        output = spec["output_path"]
        result = self.run_engine(contract.INFER, spec, feedback)
        if result is None:
            return {}
        summary: contract.InferSummary = result["summary"]
        prediction = [l for l in summary.get("layers") or [] if l.get("filepath_key") == "model_output_image"]
        style = (prediction or [{}])[0].get("geoserver_style")  # not the confidence layer's grey ramp
        if context.willLoadLayerOnCompletion(output):
            post = _StylePrediction(style)
            self._post_processors.append(post)
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(post)
        feedback.pushInfo(f"Prediction written to {output} (inference {summary['inference_id']}).")
        return {self.OUTPUT: output}
