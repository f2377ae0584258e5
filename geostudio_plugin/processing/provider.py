"""Processing provider ``geostudio``: every GeoStudio workflow as an algorithm, in four groups (Data, Datasets,
Fine-tuning, Inference; engine_algorithm.GROUPS), for the toolbox, the Model Designer, batch mode and qgis_process.
Registered by the plugin's initProcessing, removed by its unload. Algorithms read the workspace's models, datasets
and templates when they load; ``workspace_index.changed()`` reloads them after a job changes those."""

from __future__ import annotations

from importlib import import_module

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import icon_path


#: The algorithms, module:class, by group: adding one is adding its entry here (imported when the toolbox loads).
ALGORITHMS = (
    "list_collections:ListCollectionsAlgorithm", "check_availability:CheckAvailabilityAlgorithm",
    "fetch_imagery:FetchImageryAlgorithm",  # Data
    "prescan_dataset:PrescanDatasetAlgorithm", "onboard_dataset:OnboardDatasetAlgorithm",  # Datasets
    "tune_model:TuneModelAlgorithm", "export_model:ExportModelAlgorithm",  # Fine-tuning
    "infer_area:InferAreaAlgorithm", "infer_raster:InferRasterAlgorithm",  # Inference
)


class GeoStudioProvider(QgsProcessingProvider):
    def id(self) -> str:  # noqa: A003 - QGIS API
        return "geostudio"

    def name(self) -> str:
        return "GeoStudio"

    def longName(self) -> str:  # noqa: N802
        return "GeoStudio: geospatial foundation models (Terrakit, TerraTorch)"

    def icon(self) -> QIcon:
        return QIcon(icon_path("geostudio.svg"))

    def loadAlgorithms(self) -> None:  # noqa: N802
        for entry in ALGORITHMS:
            module, name = entry.split(":")
            self.addAlgorithm(getattr(import_module(f"{__package__}.{module}"), name)())
