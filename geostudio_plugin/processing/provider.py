"""Processing provider ``geostudio``: onboarding a dataset, fine-tuning a model, inference on a raster layer and
inference over an area and dates as algorithms (Model Designer, qgis_process)."""

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
        from .check_availability import CheckAvailabilityAlgorithm
        from .fetch_imagery import FetchImageryAlgorithm
        from .list_collections import ListCollectionsAlgorithm
        from .infer_area import InferAreaAlgorithm
        from .infer_raster import InferRasterAlgorithm
        from .onboard_dataset import OnboardDatasetAlgorithm
        from .tune_model import TuneModelAlgorithm

        self.addAlgorithm(InferAreaAlgorithm())
        self.addAlgorithm(InferRasterAlgorithm())
        self.addAlgorithm(OnboardDatasetAlgorithm())
        self.addAlgorithm(TuneModelAlgorithm())
        self.addAlgorithm(ListCollectionsAlgorithm())
        self.addAlgorithm(CheckAvailabilityAlgorithm())
        self.addAlgorithm(FetchImageryAlgorithm())
