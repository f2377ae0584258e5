"""``search``: which scenes and dates a connector has for an area, a date range and a cloud limit.

The result has the Studio's data-advice shape (results[].unique_dates, available_data) plus the
scene footprints as GeoJSON and, when nothing matches, the nearest dates that do exist.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Optional

from .. import protocol
from ..workspace import Workspace
from .failures import classify
from .session import open_collection
from .spec import SearchSpec


def _footprint(item: dict[str, Any], bbox: list[float]) -> dict[str, Any]:
    if item.get("geometry"):
        return item["geometry"]
    west, south, east, north = item.get("bbox") or bbox
    return {"type": "Polygon", "coordinates": [[[west, south], [east, south], [east, north], [west, north],
                                                [west, south]]]}


def _stac_geometries(stac_url: str, collection: str, bbox: list[float], start: date, end: date) -> dict[str, Any]:
    """Footprints for a STAC connector whose find_data drops geometry (sentinel_aws keeps id and properties)."""
    import pystac_client

    search = pystac_client.Client.open(stac_url).search(collections=[collection], bbox=bbox, limit=100,
                                                         datetime=f"{start.isoformat()}/{end.isoformat()}")
    return {item.id: item.geometry for item in search.items()}


def find(connector: Any, connector_id: str, collection: str, bbox: list[float], start: date, end: date,
         maxcc: float) -> tuple[list[str], list[dict[str, Any]]]:
    """Dates and items; an empty result is not an error here."""
    if connector_id == "IBMResearchSTAC" and start == end:
        end = end + timedelta(days=1)  # its search needs start < end and treats the end as exclusive
    try:
        return connector.find_data(collection, start.isoformat(), end.isoformat(), bbox=list(bbox), maxcc=maxcc)
    except Exception as exc:  # noqa: BLE001 - "nothing found" is an answer, the rest are errors
        if classify(exc) == "nodata":
            return [], []
        raise


def nearest_dates(connector: Any, spec: SearchSpec, collection: str, limit: int = 5) -> list[str]:
    window = timedelta(days=spec.suggest_within_days)
    start = spec.date_start - window
    end = min(spec.date_end + window, date.today() - timedelta(days=1))
    if end <= start:
        return []
    dates, _ = find(connector, spec.connector, collection, spec.bbox, start, end, spec.maxcc)

    def distance(day: str) -> int:
        d = date.fromisoformat(day)
        return (spec.date_start - d).days if d < spec.date_start else (d - spec.date_end).days

    outside = [d for d in dates if not spec.date_start <= date.fromisoformat(d) <= spec.date_end]
    return sorted(outside, key=distance)[:limit]


def search(spec: SearchSpec, workspace: Optional[Workspace]) -> dict[str, Any]:
    session = open_collection(spec.connector, spec.collection, spec.endpoint, workspace,
                              announce=lambda message: protocol.progress("search", 0.1, message))
    connector, name = session.connector, session.name
    protocol.progress("search", 0.3, f"searching {name} from {spec.date_start} to {spec.date_end}")
    with session.errors(f"searching {name}"):
        dates, items = session.retrying(
            lambda: find(connector, spec.connector, name, spec.bbox, spec.date_start, spec.date_end, spec.maxcc))
        geometries = {}
        if items and spec.connector == "sentinel_aws" and not items[0].get("geometry"):
            geometries = _stac_geometries(connector.stac_url, name, spec.bbox, spec.date_start, spec.date_end)
        suggestions = [] if dates else nearest_dates(connector, spec, name)
    features = []
    for item in items:
        props = item.get("properties", {})
        when = props.get("datetime") or props.get("start_datetime") or ""
        features.append({"type": "Feature", "id": item["id"],
                         "geometry": geometries.get(item["id"]) or _footprint(item, spec.bbox),
                         "properties": {"id": item["id"], "date": when[:10], "datetime": when,
                                        "cloud_cover": props.get("eo:cloud_cover")}})
    protocol.progress("search", 1.0, f"{len(items)} scene(s) on {len(dates)} date(s)")
    return {
        "connector": spec.connector, "collection": name, "bbox": spec.bbox,
        "date_start": spec.date_start.isoformat(), "date_end": spec.date_end.isoformat(), "maxcc": spec.maxcc,
        "results": [{"bbox": spec.bbox, "unique_dates": dates,
                     "available_data": [{"id": f["id"], "properties": {"datetime": f["properties"]["datetime"],
                                                                       "eo:cloud_cover": f["properties"]["cloud_cover"]}}
                                        for f in features]}],
        "footprints": {"type": "FeatureCollection", "features": features},
        "suggested_dates": suggestions,
    }


def run(spec: SearchSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    return {}, search(spec, workspace)
