"""Processing algorithm "Check data availability": the Connectors dock's Check availability as an algorithm.

The engine's ``search`` (contract.search_spec, the dock's builder, with the dock's endpoint and credentials)
gives the scenes of a collection over an area between two days; they become a footprints layer (one polygon per
scene) and a dates table (one row per day with data).
"""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSink,
)

from .. import compat, contract, credentials, layers
from . import data_source
from .data_source import SourceRequest
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example


def _fields(columns: list[tuple[str, Any]]) -> QgsFields:
    fields = QgsFields()
    for name, kind in columns:
        fields.append(QgsField(name, kind))
    return fields


FOOTPRINT_FIELDS = [("date", compat.FIELD_STRING), ("scene_id", compat.FIELD_STRING),
                    ("datetime", compat.FIELD_STRING), ("cloud_cover", compat.FIELD_DOUBLE)]
DATE_FIELDS = [("date", compat.FIELD_STRING), ("scenes", compat.FIELD_INT), ("min_cloud", compat.FIELD_DOUBLE),
               ("max_cloud", compat.FIELD_DOUBLE)]

#: The help of the source parameters (data_source.add_source_parameters), shared by the Data algorithms.
SOURCE_INPUTS = (
    (data_source.CONNECTOR, "the data connector, by id (e.g. sentinel_aws: open data, no credentials)"),
    (data_source.COLLECTION, "one of the connector's collections, as 'List connectors and collections' names it"),
    (data_source.EXTENT, "the area, in any CRS (it is turned into a longitude/latitude box)"),
    (f"{data_source.START_DATE}, {data_source.END_DATE}", "the first and last day (YYYY-MM-DD; the end day "
                                                          "included; no end date: the start date only)"),
    (data_source.MAX_CLOUD, "the most cloud cover a scene may have, in %"),
)
#: The source arguments of the Data algorithms' qgis_process examples (README's Processing section).
EXAMPLE_SOURCE = ("CONNECTOR=sentinel_aws", "COLLECTION=sentinel-2-l2a",
                  "'EXTENT=-88.19,-88.15,15.77,15.84 [EPSG:4326]'")


def search_spec(request: SourceRequest) -> dict[str, Any]:
    """The ``search`` spec, by the Connectors dock's builder (tests/qgis/test_same_specs.py compares them)."""
    return contract.search_spec(request.connector, request.collection, request.bbox, request.start, request.end,
                                maxcc=request.maxcc, endpoint=request.endpoint)


def search(algorithm: EngineAlgorithm, request: SourceRequest, feedback: QgsProcessingFeedback
           ) -> Optional[contract.SearchSummary]:
    """The engine's search for the request, as the Connectors dock runs it; None when cancelled."""
    result = algorithm.run_engine(contract.SEARCH, search_spec(request), feedback,
                                  secrets=credentials.load(request.connector))
    return None if result is None else result["summary"]


def nothing_found(summary: contract.SearchSummary) -> str:
    near = summary.get("suggested_dates") or []
    return (f"No {summary.get('collection')} scene from {summary.get('date_start')} to {summary.get('date_end')} "
            f"over the area below {summary.get('maxcc', 100):g}% cloud. "
            + ("Nearest dates with data: " + ", ".join(near) + "." if near else "No data within 120 days either."))


class CheckAvailabilityAlgorithm(EngineAlgorithm):
    FOOTPRINTS = "FOOTPRINTS"
    DATES = "DATES"
    DATE_LIST = "DATE_LIST"
    SCENE_COUNT = "SCENE_COUNT"

    GROUP_ID = "data"
    HELP = AlgorithmHelp(
        "Finds the scenes of a collection over an area between two days (the end day included) under a cloud-cover "
        "limit, as the Connectors dock's Check availability does, with its endpoints and credentials. When nothing "
        "is found the log says the nearest dates with data.",
        inputs=(*SOURCE_INPUTS,
                ("FOOTPRINTS", "where the scene footprints go"),
                ("DATES", "where the dates table goes")),
        outputs=(("FOOTPRINTS", "one polygon per scene, in EPSG:4326: date, scene id, acquisition time, cloud cover"),
                 ("DATES", "one row per day with data: date, scenes, least and most cloud"),
                 ("DATE_LIST", "the days with data, comma separated"),
                 ("SCENE_COUNT", "the number of scenes")),
        example=qgis_process_example("check_availability", *EXAMPLE_SOURCE, "START_DATE=2018-08-01",
                                     "END_DATE=2018-09-30", "MAX_CLOUD=80", "FOOTPRINTS=scenes.gpkg",
                                     "DATES=dates.csv"))

    def name(self) -> str:
        return "check_availability"

    def displayName(self) -> str:  # noqa: N802
        return "Check data availability"

    def createInstance(self) -> "CheckAvailabilityAlgorithm":  # noqa: N802
        return CheckAvailabilityAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        data_source.add_source_parameters(self)
        self.addParameter(QgsProcessingParameterFeatureSink(self.FOOTPRINTS, "Scene footprints",
                                                            compat.SOURCE_POLYGON))
        self.addParameter(QgsProcessingParameterFeatureSink(self.DATES, "Dates with data", compat.SOURCE_TABLE))
        self.addOutput(QgsProcessingOutputString(self.DATE_LIST, "Dates with data (comma separated)"))
        self.addOutput(QgsProcessingOutputNumber(self.SCENE_COUNT, "Number of scenes"))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        request = data_source.read_source(self, parameters, context)
        summary = search(self, request, feedback)
        if summary is None:
            return {}
        features = (summary.get("footprints") or {}).get("features") or []
        footprints_sink, footprints = self.parameterAsSink(
            parameters, self.FOOTPRINTS, context, _fields(FOOTPRINT_FIELDS), compat.WKB_POLYGON,
            QgsCoordinateReferenceSystem("EPSG:4326"))
        shapes = layers.footprint_shapes(summary["footprints"]) if features else []
        for shape, source in zip(shapes, features):
            props = source.get("properties") or {}
            feature = QgsFeature(_fields(FOOTPRINT_FIELDS))
            feature.setGeometry(shape)
            feature.setAttributes([props.get("date"), props.get("id"), props.get("datetime"), props.get("cloud_cover")])
            footprints_sink.addFeature(feature)
        days = list((summary.get("results") or [{}])[0].get("unique_dates") or [])
        dates_sink, dates = self.parameterAsSink(parameters, self.DATES, context, _fields(DATE_FIELDS),
                                                 compat.WKB_NO_GEOMETRY, QgsCoordinateReferenceSystem())
        for day in days:
            clouds = [f["properties"].get("cloud_cover") for f in features if f["properties"].get("date") == day]
            known = [c for c in clouds if c is not None]
            row = QgsFeature(_fields(DATE_FIELDS))
            row.setAttributes([day, len(clouds), min(known) if known else None, max(known) if known else None])
            dates_sink.addFeature(row)
        if days:
            feedback.pushInfo(f"{len(features)} scene(s) on {len(days)} date(s): {', '.join(days)}.")
        else:
            feedback.pushWarning(nothing_found(summary))
        return {self.FOOTPRINTS: footprints, self.DATES: dates, self.DATE_LIST: ",".join(days),
                self.SCENE_COUNT: len(features)}
