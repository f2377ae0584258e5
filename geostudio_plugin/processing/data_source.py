"""The parameters the Data algorithms share (connector, collection, area, dates, cloud cover) and the one
reading of them into the plain values ``contract.search_spec`` / ``contract.fetch_spec`` take.

Connectors come from the plugin's own data file (engine/data/connectors.json, plain JSON), so the enum is filled
at load without starting the engine. The collection is a string: collections are Terrakit's list, which only the
engine's environment holds, plus the user's own (the workspace catalog) and those a run-time catalogue (IBM
Research STAC) reports; an enum of them would start the engine at every provider load (each QGIS start, each
``qgis_process`` call) and its indices would shift in saved models when the catalog changes. The engine checks
the name and says which collections the connector has; "List connectors and collections" lists them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Optional

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterDateTime,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .. import compat, credentials, qgis_inputs
from ..engine.catalog import connector_facts  # the engine's data file; plain JSON, no engine dependency

EXTENT, START_DATE, END_DATE = "EXTENT", "START_DATE", "END_DATE"
CONNECTOR, COLLECTION, MAX_CLOUD = "CONNECTOR", "COLLECTION", "MAX_CLOUD"
DEFAULT_CONNECTOR, DEFAULT_COLLECTION = "sentinel_aws", "sentinel-2-l2a"  # open data, no credentials


def connector_ids() -> list[str]:
    return [str(c["id"]) for c in connector_facts()]


@dataclass(frozen=True)
class SourceRequest:
    """What to search or fetch: a connector's collection over an EPSG:4326 bbox between two days."""

    connector: str
    collection: str
    endpoint: Optional[str]
    bbox: list[float]
    start: str
    end: str
    maxcc: float


def add_source_parameters(algorithm: QgsProcessingAlgorithm, default_cloud: int = 80) -> None:
    ids = connector_ids()
    connector = QgsProcessingParameterEnum(CONNECTOR, "Connector", options=ids,
                                           defaultValue=DEFAULT_CONNECTOR if DEFAULT_CONNECTOR in ids else ids[0])
    connector.setUsesStaticStrings(True)  # models and qgis_process name the connector, not its position
    algorithm.addParameter(connector)
    algorithm.addParameter(QgsProcessingParameterString(
        COLLECTION, "Collection (as 'List connectors and collections' names it)", defaultValue=DEFAULT_COLLECTION))
    algorithm.addParameter(QgsProcessingParameterExtent(EXTENT, "Area (any CRS)"))
    algorithm.addParameter(QgsProcessingParameterDateTime(START_DATE, "Start date", compat.DATETIME_DATE))
    algorithm.addParameter(QgsProcessingParameterDateTime(END_DATE, "End date (empty: the start date only)",
                                                          compat.DATETIME_DATE, optional=True))
    algorithm.addParameter(QgsProcessingParameterNumber(MAX_CLOUD, "Max cloud cover (%)", compat.NUMBER_INTEGER,
                                                        defaultValue=default_cloud, minValue=0, maxValue=100))


def _day(algorithm: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
         context: QgsProcessingContext) -> Optional[_dt.date]:
    value = parameters.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    day = algorithm.parameterAsDateTime(parameters, name, context).date()
    if not day.isValid():
        raise QgsProcessingException(f"{name}: '{value}' is not a date; give it as YYYY-MM-DD.")
    return _dt.date(day.year(), day.month(), day.day())


def read_source(algorithm: QgsProcessingAlgorithm, parameters: dict[str, Any],
                context: QgsProcessingContext) -> SourceRequest:
    """The parameters as plain values, refused with the parameter's name when they cannot be searched."""
    connector = algorithm.parameterAsEnumString(parameters, CONNECTOR, context) or DEFAULT_CONNECTOR
    collection = algorithm.parameterAsString(parameters, COLLECTION, context).strip()
    if not collection:
        raise QgsProcessingException(f"Collection: name one of the {connector} collections ('List connectors and "
                                     f"collections' lists them). (parameter {COLLECTION})")
    extent = algorithm.parameterAsExtent(parameters, EXTENT, context)
    bbox = qgis_inputs.bbox_4326(extent, algorithm.parameterAsExtentCrs(parameters, EXTENT, context),
                                 context.transformContext())  # the one extent -> EPSG:4326 rule
    if bbox is None or bbox[0] >= bbox[2] or bbox[1] >= bbox[3]:
        raise QgsProcessingException(f"Area: the rectangle is empty; give an area with a width and a height. "
                                     f"(parameter {EXTENT})")
    start = _day(algorithm, parameters, START_DATE, context)
    if start is None:
        raise QgsProcessingException(f"Start date: give the first day, as YYYY-MM-DD. (parameter {START_DATE})")
    end = _day(algorithm, parameters, END_DATE, context) or start
    if end < start:
        raise QgsProcessingException(f"End date: {end} is before the start date {start}. (parameter {END_DATE})")
    return SourceRequest(connector=connector, collection=collection, endpoint=credentials.endpoint(connector),
                         bbox=bbox, start=start.isoformat(), end=end.isoformat(),
                         maxcc=algorithm.parameterAsInt(parameters, MAX_CLOUD, context))
