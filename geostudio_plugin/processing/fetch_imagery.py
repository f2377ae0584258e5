"""Processing algorithm "Fetch imagery": the Connectors dock's Check availability then Fetch, as one algorithm.

The engine's ``search`` finds the days with data between the two dates (under the cloud limit); its ``fetch``
(contract.fetch_spec, the dock's builder) writes one Cloud-Optimized GeoTIFF per day into the workspace, which
are copied into the output folder. The first day's raster is the main output, for the Model Designer to chain
(e.g. into "Run inference on raster layer").
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)

from .. import contract, credentials, layers
from . import data_source
from .data_source import SourceRequest
from .check_availability import EXAMPLE_SOURCE, SOURCE_INPUTS, nothing_found, search
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


class _ShowBands(QgsProcessingLayerPostProcessorInterface):
    """True colour from the fetched R, G, B bands, applied on the main thread when QGIS loads the layer."""

    def __init__(self, rgb: Optional[list[int]]) -> None:
        super().__init__()
        self.rgb = rgb

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802, ANN001 - QGIS API
        layers.show_bands(layer, self.rgb)


def fetch_spec(request: SourceRequest, days: list[str], bands: list[str]) -> dict[str, Any]:
    """The ``fetch`` spec of the days found, by the Connectors dock's builder (test_same_specs.py compares them)."""
    return contract.fetch_spec(request.connector, request.collection, request.bbox, days, bands=bands,
                               maxcc=request.maxcc, endpoint=request.endpoint)


def band_list(text: str) -> list[str]:
    """'red, green;blue nir' -> the band names, as the Connectors dock splits its Bands field."""
    return [b for b in re.split(r"[,;\s]+", text) if b]


def copy_all(files: list[str], folder: Path, feedback: QgsProcessingFeedback) -> Optional[list[str]]:
    """The files copied into ``folder`` (each under a temporary name, then renamed); None when cancelled. A
    failure or a cancel takes back what was copied, so the folder never holds part of a fetch."""
    folder.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    try:
        for source in files:
            if feedback.isCanceled():
                break
            target = folder / Path(source).name
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial)
            os.replace(partial, target)
            copied.append(target)
        else:
            return [str(p) for p in copied]
    except OSError as error:
        for path in copied + [folder / (Path(s).name + ".part") for s in files]:
            path.unlink(missing_ok=True)
        raise QgsProcessingException(f"Could not write the fetched rasters into {folder}: {error} "
                                     "(parameter OUTPUT)") from None
    for path in copied:
        path.unlink(missing_ok=True)
    return None


class FetchImageryAlgorithm(EngineAlgorithm):
    BANDS = "BANDS"
    LOAD = "LOAD"
    OUTPUT = "OUTPUT"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    RASTERS = "RASTERS"
    DATE_LIST = "DATE_LIST"

    _post_processors: list[_ShowBands] = []  # QGIS does not own them; keep them alive

    GROUP_ID = "data"
    HELP = AlgorithmHelp(
        "Fetches a collection's bands over an area for every day with data between two dates (the end day "
        "included) under a cloud-cover limit: one Cloud-Optimized GeoTIFF per day (float32 in physical units as "
        "the catalogue documents them, nodata -9999, bands named). The Connectors dock's endpoints and credentials "
        "are used. Cancelling stops the engine and leaves nothing in the folder.",
        inputs=(*SOURCE_INPUTS,
                ("BANDS", "band names as 'List connectors and collections' gives them, separated by commas (empty: "
                          "the collection's red, green and blue)"),
                ("LOAD", "load the rasters into the project, in true colour"),
                ("OUTPUT", "the folder the rasters go into, as <connector>_<collection>_<date>.tif")),
        outputs=(("OUTPUT", "the folder"),
                 ("OUTPUT_RASTER", "the first day's raster, to chain in the Model Designer into 'Run inference on "
                                   "raster layer'"),
                 ("RASTERS", "every day's raster"),
                 ("DATE_LIST", "the days fetched, comma separated")),
        example=qgis_process_example("fetch_imagery", *EXAMPLE_SOURCE, "START_DATE=2018-09-14",
                                     "BANDS=blue,green,red,nir", "OUTPUT=fetched"))

    def name(self) -> str:
        return "fetch_imagery"

    def displayName(self) -> str:  # noqa: N802
        return "Fetch imagery"

    def createInstance(self) -> "FetchImageryAlgorithm":  # noqa: N802
        return FetchImageryAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        data_source.add_source_parameters(self)
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands (comma separated; empty: red, green, blue)",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.LOAD, "Load the rasters into the project",
                                                        defaultValue=True))
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Output folder"))
        self.addOutput(QgsProcessingOutputRasterLayer(self.OUTPUT_RASTER, "First date's raster"))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.RASTERS, "Rasters (one per date)"))
        self.addOutput(QgsProcessingOutputString(self.DATE_LIST, "Dates fetched (comma separated)"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        request = data_source.read_source(self, parameters, context)
        bands = band_list(self.parameterAsString(parameters, self.BANDS, context))
        folder = Path(self.parameterAsFileOutput(parameters, self.OUTPUT, context))
        steps = QgsProcessingMultiStepFeedback(2, feedback)
        summary = search(self, request, steps)
        if summary is None:
            return {}
        days = list((summary.get("results") or [{}])[0].get("unique_dates") or [])
        if not days:
            raise QgsProcessingException(f"{nothing_found(summary)} (parameters {data_source.START_DATE}, "
                                         f"{data_source.END_DATE}, {data_source.MAX_CLOUD})")
        feedback.pushInfo(f"Fetching {request.collection} for {len(days)} date(s): {', '.join(days)}.")
        steps.setCurrentStep(1)
        result = self.run_engine(contract.FETCH, fetch_spec(request, days, bands), steps,
                                 secrets=credentials.load(request.connector))
        if result is None:
            return {}
        fetched: contract.FetchSummary = result["summary"]
        files = fetched.get("files") or []
        paths = copy_all([f["path"] for f in files], folder, feedback)
        if paths is None:
            return {}
        feedback.pushInfo(f"Fetched {len(paths)} raster(s) into {folder} (kept in the workspace as "
                          f"{fetched.get('fetch_id')}).")
        if self.parameterAsBool(parameters, self.LOAD, context) and context.project() is not None:
            for info, path in zip(files, paths):
                details = QgsProcessingContext.LayerDetails(f"{fetched.get('collection')} {info['date']}",
                                                            context.project(), self.RASTERS)
                post = _ShowBands(info.get("rgb"))
                self._post_processors.append(post)
                details.setPostProcessor(post)
                context.addLayerToLoadOnCompletion(path, details)
        return {self.OUTPUT: str(folder), self.OUTPUT_RASTER: paths[0], self.RASTERS: paths,
                self.DATE_LIST: ",".join(f["date"] for f in files)}
