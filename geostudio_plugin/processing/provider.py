"""Processing provider ``geostudio``: every GeoStudio workflow as an algorithm, in four groups (Data, Datasets,
Fine-tuning, Inference; engine_algorithm.GROUPS), for the toolbox, the Model Designer, batch mode and qgis_process.
Registered by the plugin's initProcessing, removed by its unload. Algorithms read the workspace's models, datasets
and templates when they load; ``workspace_index.changed()`` reloads them after a job changes those."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..paths import icon_path


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
        from .export_model import ExportModelAlgorithm
        from .infer_area import InferAreaAlgorithm
        from .infer_raster import InferRasterAlgorithm
        from .onboard_dataset import OnboardDatasetAlgorithm
        from .prescan_dataset import PrescanDatasetAlgorithm
        from .tune_model import TuneModelAlgorithm

        self.addAlgorithm(InferAreaAlgorithm())
        self.addAlgorithm(InferRasterAlgorithm())
        self.addAlgorithm(OnboardDatasetAlgorithm())
        self.addAlgorithm(TuneModelAlgorithm())
        self.addAlgorithm(PrescanDatasetAlgorithm())
        self.addAlgorithm(ExportModelAlgorithm())
