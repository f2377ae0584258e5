"""Processing algorithm "List connectors and collections": the Connectors dock's tree as a table.

The engine's ``catalog`` command, with the spec the dock's catalog store builds (the user's endpoints and which
connectors have credentials in QGIS, never their values); one row per collection, and one row with an empty
collection for a connector that lists none until it is asked (IBM Research STAC without an endpoint).
"""

from __future__ import annotations

from typing import Any, Mapping

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
)

from .. import compat, contract, credentials
from .engine_algorithm import EngineAlgorithm
from .help import AlgorithmHelp, qgis_process_example

COLUMNS = [("connector", compat.FIELD_STRING), ("connector_name", compat.FIELD_STRING),
           ("collection", compat.FIELD_STRING), ("title", compat.FIELD_STRING),
           ("modality_tag", compat.FIELD_STRING), ("resolution_m", compat.FIELD_DOUBLE),
           ("bands", compat.FIELD_STRING), ("credentials_needed", compat.FIELD_STRING),
           ("credentials_configured", compat.FIELD_STRING), ("access", compat.FIELD_STRING),
           ("endpoint", compat.FIELD_STRING)]


def table_fields() -> QgsFields:
    fields = QgsFields()
    for name, kind in COLUMNS:
        fields.append(QgsField(name, kind))
    return fields


def rows(summary: contract.CatalogSummary, user_endpoints: Mapping[str, str],
         configured: Mapping[str, bool]) -> list[list[Any]]:
    """One row per collection of each connector (COLUMNS' order); a connector without collections gets one. The
    endpoint is the one a job uses: the user's (contract.resolve_endpoints), else the connector's own;
    ``configured``: whether QGIS holds the connector's credentials (credentials.configured_connectors)."""
    out = []
    for connector in summary.get("connectors") or []:
        cid = str(connector.get("id") or "")
        endpoint = contract.resolve_endpoints([cid], user_endpoints, {}).get(cid) or connector.get("endpoint") or ""
        needed = [str(c.get("label") or c.get("env")) for c in connector.get("credentials") or []]
        access = connector.get("access") or {}
        state = str(access.get("state") or "")
        held = "not needed" if not needed else ("yes" if configured.get(cid) else "no")
        common = [", ".join(needed), held, state, str(endpoint)]
        for collection in connector.get("collections") or [{}]:
            title = str(collection.get("long_name") or collection.get("description") or "").strip()
            out.append([cid, str(connector.get("name") or ""),
                        str(collection.get("collection") or ""), title.splitlines()[0][:200] if title else "",
                        str(collection.get("modality_tag") or ""), collection.get("resolution_m"),
                        ", ".join(str(b.get("band_name")) for b in collection.get("bands") or []), *common])
    return out


class ListCollectionsAlgorithm(EngineAlgorithm):
    CHECK_ACCESS = "CHECK_ACCESS"
    OUTPUT = "OUTPUT"

    GROUP_ID = "data"
    HELP = AlgorithmHelp(
        "Lists every data connector GeoStudio knows (Terrakit's: Sentinel Hub, NASA Earthdata, Sentinel AWS, IBM "
        "Research STAC, ...) and its collections as a table without geometry. The collection names are what 'Check "
        "data availability' and 'Fetch imagery' take.",
        inputs=(("CHECK_ACCESS", "on (the default): ask each connector's endpoint whether it answers (a few "
                                 "seconds without a network)"),
                ("OUTPUT", "where the table goes (.csv, .gpkg, ...)")),
        outputs=(("OUTPUT", "one row per collection: connector, collection, title, modality tag, resolution, bands, "
                            "the credentials it needs and whether QGIS holds them (set in GeoStudio > Connectors > "
                            "Credentials…), its access state and its endpoint (yours where you set one in the "
                            "Connectors dock); a connector that lists no collection until asked gets one row with "
                            "an empty collection"),),
        example=qgis_process_example("list_collections", "CHECK_ACCESS=false", "OUTPUT=collections.csv"))

    def name(self) -> str:
        return "list_collections"

    def displayName(self) -> str:  # noqa: N802
        return "List connectors and collections"

    def createInstance(self) -> "ListCollectionsAlgorithm":  # noqa: N802
        return ListCollectionsAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802, ANN001
        self.addParameter(QgsProcessingParameterBoolean(self.CHECK_ACCESS, "Check access (ask each endpoint)",
                                                        defaultValue=True))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Connectors and collections",
                                                            compat.SOURCE_TABLE))

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        endpoints, configured = credentials.endpoints(), credentials.configured_connectors()
        spec = contract.catalog_spec(endpoints, configured,
                                     check_access=self.parameterAsBool(parameters, self.CHECK_ACCESS, context))
        result = self.run_engine(contract.CATALOG, spec, feedback)
        if result is None:
            return {}
        sink, dest = self.parameterAsSink(parameters, self.OUTPUT, context, table_fields(), compat.WKB_NO_GEOMETRY,
                                          QgsCoordinateReferenceSystem())
        table = rows(result["summary"], endpoints, configured)
        for row in table:
            feature = QgsFeature(table_fields())
            feature.setAttributes(row)
            sink.addFeature(feature)
        feedback.pushInfo(f"{len({r[0] for r in table})} connector(s), {sum(1 for r in table if r[2])} collection(s).")
        return {self.OUTPUT: dest}
