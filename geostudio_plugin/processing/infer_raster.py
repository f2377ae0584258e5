"""Processing algorithm "Run inference on raster layer": the engine's ``infer`` on one raster."""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .. import layers, settings, workspace_index
from .engine_algorithm import EngineAlgorithm

WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


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

    def name(self) -> str:
        return "infer_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Run inference on raster layer"

    def group(self) -> str:
        return "Inference"

    def groupId(self) -> str:  # noqa: N802
        return "inference"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Runs a model fine-tuned with GeoStudio on a raster layer (optionally only inside an extent) and "
                "writes a georeferenced prediction GeoTIFF with the input's grid and CRS. The work runs in the "
                "GeoStudio engine, a separate process; cancelling stops it.")

    def createInstance(self) -> "InferRasterAlgorithm":  # noqa: N802
        return InferRasterAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        tunes = workspace_index.tunes()
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, "Tuned model (tune id or name)", defaultValue=tunes[0]["tune_id"] if tunes else None))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Only inside this extent", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Prediction"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("The input raster could not be opened.")
        source = layer.dataProvider().dataSourceUri().split("|")[0]
        model = self.parameterAsString(parameters, self.MODEL, context).strip()
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        bbox: list[list[float]] = []
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, WGS84)
            if not extent.isNull() and not extent.isEmpty():
                bbox = [[extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]]
        spec = {"fine_tuning_id": model, "description": layer.name(), "device": settings.device(),
                "spatial_domain": {"bbox": bbox, "urls": [source]}, "output_path": output}

        result = self.run_engine("infer", spec, feedback)
        if result is None:
            return {}
        summary = result["summary"]
        style = (summary.get("layers") or [{}])[0].get("geoserver_style")
        if context.willLoadLayerOnCompletion(output):
            post = _StylePrediction(style)
            self._post_processors.append(post)
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(post)
        feedback.pushInfo(f"Prediction written to {output} (inference {summary['inference_id']}).")
        return {self.OUTPUT: output}
