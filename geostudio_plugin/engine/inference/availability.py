"""Which dates have data for a model's input over an area: the ``check-availability`` command, and the check
``infer`` runs before it downloads anything.

For each modality of the model (its connector and collection) and each ``temporal_domain`` entry, the
connector is searched with the cloud limit (the ``search`` command's code). A day is available when a scene
covers it; a range takes its clearest day (least cloud cover, then the latest), or, with ``temporal_each``, every
day in it that has data (one entry, and one output, per day: ``expand_ranges``). For an entry without data the
nearest dates that have data are searched in a widened window; when none exists there either and the area lies
outside the collection's spatial extent (STAC collections say theirs), that is said instead.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Optional

from pydantic import Field, ValidationError, field_validator, model_validator

from .. import protocol
from ..protocol import EngineError, SpecError
from ..specs import DataSource, HttpUrl, ItemId, StudioModel
from ..workspace import Workspace, read_record
from .plan import MAX_INFERENCE_AREA_SQ_KM, DateRequest, union
from .spec import TEMPORAL_EACH, SpatialDomain, check_temporal_domain

SUGGEST_WITHIN_DAYS = 120  # how far the nearest-dates search looks on each side of an entry
STAC_CONNECTORS = ("sentinel_aws", "IBMResearchSTAC")


class AvailabilitySpec(StudioModel):
    """The model (or its input data spec), an area, dates and a cloud limit: which dates have data."""

    fine_tuning_id: ItemId = Field(default="", description="the tune whose input data to look for")
    model_input_data_spec: Optional[list[DataSource]] = None
    spatial_domain: SpatialDomain
    temporal_domain: list[str] = Field(min_length=1)
    maxcc: float = Field(default=80, ge=0, le=100, description="maximum cloud cover, percent (the Studio UI's 80)")
    endpoints: dict[str, HttpUrl] = {}
    max_area_sq_km: float = Field(default=MAX_INFERENCE_AREA_SQ_KM, gt=0, le=1e7)
    temporal_each: bool = Field(default=False, description=TEMPORAL_EACH)

    _dates = field_validator("temporal_domain")(lambda cls, v: check_temporal_domain(v))

    @model_validator(mode="after")
    def _has_model_and_area(self) -> "AvailabilitySpec":
        if not (self.fine_tuning_id or self.model_input_data_spec):
            raise ValueError("name the model (fine_tuning_id) or give model_input_data_spec")
        if not (self.spatial_domain.bbox or self.spatial_domain.polygons):
            raise ValueError("spatial_domain needs an area: bbox [[minx, miny, maxx, maxy]] or polygons (EPSG:4326)")
        return self


def model_input_sources(record: Optional[dict[str, Any]], workspace: Workspace,
                        given: Optional[list[DataSource]] = None) -> list[DataSource]:
    """The model's input data, in the Studio's ``model_input_data_spec`` shape: the one given in the spec, else
    the tune's ``model_input_data_spec``, else its dataset's ``data_sources`` of the tune's modality, else the
    data source the tune record kept. Each needs a connector and a collection to be fetched."""
    sources: list[Any] = list(given or [])
    if not sources and record is not None:
        sources = list(record.get("model_input_data_spec") or [])
        data_spec = record.get("data_spec") or {}
        if not sources and record.get("dataset_id"):
            folder = workspace.find("datasets", str(record["dataset_id"]))
            if folder is not None and (folder / "dataset.json").is_file():
                dataset = read_record(folder / "dataset.json", f"dataset {folder.name}", ("data_sources",))
                tag = data_spec.get("modality_tag")
                sources = [s for s in dataset["data_sources"] if not tag or s.get("modality_tag") == tag]
        if not sources and data_spec.get("data_source"):
            sources = [data_spec["data_source"]]
    parsed = []
    for source in sources:
        if isinstance(source, DataSource):
            parsed.append(source)
            continue
        try:  # a record's entry: the Studio's shape, file_suffix optional there
            parsed.append(DataSource.model_validate({"file_suffix": ".tif", **dict(source)}))
        except (ValidationError, TypeError, ValueError) as exc:
            raise EngineError("record_invalid", f"Tune {record['tune_id'] if record else ''}: its model input data "
                              f"spec cannot be read: {str(exc).splitlines()[0]} ({source!r:.200}).",
                              "Give model_input_data_spec in the spec, or fine-tune again.") from None
    incomplete = [s.modality_tag for s in parsed if not (s.connector and s.collection)]
    if not parsed or incomplete:
        whose = f"tune {record['tune_id']}" if record else "the spec"
        raise SpecError("model_input_missing", f"{whose} does not say where its input data comes from"
                        + (f" (modality {', '.join(incomplete)} has no connector or collection)" if incomplete else "")
                        + ": inference over an area fetches it from a connector.",
                        "Give model_input_data_spec: [{connector, collection, modality_tag, file_suffix, bands: "
                        "[{index, band_name, RGB_band, scaling_factor}]}], or predict on GeoTIFFs "
                        "(spatial_domain.urls).")
    return parsed


def _scene(item: dict[str, Any]) -> dict[str, Any]:
    props = item.get("properties", {})
    when = props.get("datetime") or props.get("start_datetime") or ""
    return {"id": item.get("id"), "datetime": when, "date": when[:10], "cloud_cover": props.get("eo:cloud_cover")}


def pick_date(request: DateRequest, scenes: list[dict[str, Any]]) -> Optional[str]:
    """The day to infer on: the day asked for, or a range's clearest day (least mean cloud cover, then latest)."""
    days: dict[str, list[float]] = {}
    for scene in scenes:
        if scene["date"] and request.start.isoformat() <= scene["date"] <= request.end.isoformat():
            cover = scene["cloud_cover"]
            days.setdefault(scene["date"], []).append(float(cover) if cover is not None else 100.0)
    if not days:
        return None
    return min(days, key=lambda d: (sum(days[d]) / len(days[d]), -date.fromisoformat(d).toordinal()))


def nearest(found: list[str], request: DateRequest, limit: int = 5) -> list[str]:
    def distance(day: str) -> int:
        d = date.fromisoformat(day)
        return (request.start - d).days if d < request.start else (d - request.end).days

    outside = [d for d in found if not request.start <= date.fromisoformat(d) <= request.end]
    return sorted(set(outside), key=distance)[:limit]


def collection_extent(session: Any) -> Optional[list[list[float]]]:
    """The spatial extent a STAC collection declares (lon/lat boxes); None when the connector has no such thing."""
    if session.connector_id not in STAC_CONNECTORS:
        return None
    import pystac_client

    url = getattr(session.connector, "stac_url", None) or session.endpoint
    with session.errors(f"reading the extent of {session.name}"):
        collection = session.retrying(lambda: pystac_client.Client.open(url).get_collection(session.name))
    return [list(b) for b in collection.extent.spatial.bboxes] if collection is not None else None


def _overlaps(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _search(session: Any, area: list[float], start: date, end: date, maxcc: float
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """(dates, items) of the session's collection over the area (retried, errors named by the session)."""
    from ..connectors.search import find

    with session.errors(f"searching {session.name} from {start} to {end}"):
        return session.retrying(lambda: find(session.connector, session.connector_id, session.name, area, start,
                                             end, maxcc))


def days_with_data(request: DateRequest, scenes: list[dict[str, Any]]) -> list[str]:
    """Every day of the request that has a scene, oldest first."""
    return sorted({s["date"] for s in scenes if s["date"]
                   and request.start.isoformat() <= s["date"] <= request.end.isoformat()})


def expand_ranges(session: Any, area: list[float], requests: list[DateRequest], maxcc: float
                  ) -> list[DateRequest]:
    """``temporal_each``: a range becomes one request per day in it with a scene (the range's text kept, so each
    entry says what was asked); a range without any stays, for ``no_data`` and its nearest dates."""
    expanded: list[DateRequest] = []
    for request in requests:
        days = []
        if request.is_range:
            _, items = _search(session, area, request.start, request.end, maxcc)
            days = days_with_data(request, [_scene(i) for i in items])
        expanded += [DateRequest(request.text, date.fromisoformat(d), date.fromisoformat(d)) for d in days] or [request]
    return expanded


def check(sources: list[DataSource], boxes: list[list[float]], requests: list[DateRequest], maxcc: float,
          endpoints: dict[str, str], workspace: Workspace, each: bool = False) -> list[dict[str, Any]]:
    """One entry per date request (with ``each``, per day with data of a range): ``date`` (the day to infer on,
    None without data), ``scenes`` per modality, ``nearest_dates`` (for a request without data). Raises
    ``area_outside_coverage``."""
    from ..connectors.session import open_collection

    area = union(boxes)
    if each and sources and any(r.is_range for r in requests):
        first = open_collection(sources[0].connector, sources[0].collection, endpoints.get(sources[0].connector),
                                workspace, announce=lambda message: protocol.progress("availability", 0.01, message))
        requests = expand_ranges(first, area, requests, maxcc)
    entries = [{"request": r.text, "start": r.start.isoformat(), "end": r.end.isoformat(), "date": None,
                "modalities": {}, "nearest_dates": []} for r in requests]
    for m, source in enumerate(sources):
        session = open_collection(source.connector, source.collection, endpoints.get(source.connector), workspace,
                                  announce=lambda message: protocol.progress("availability", 0.01, message))
        for request, entry in zip(requests, entries):
            if m > 0 and entry["date"] is None:
                continue  # the first modality decides the day; the others must have it too
            day = date.fromisoformat(entry["date"]) if m > 0 else None
            start, end = (day, day) if day else (request.start, request.end)
            _, items = _search(session, area, start, end, maxcc)
            scenes = [_scene(i) for i in items]
            chosen = pick_date(request, scenes) if m == 0 else (entry["date"] if scenes else None)
            entry["modalities"][source.modality_tag] = {
                "connector": source.connector, "collection": session.name,
                "scenes": [s for s in scenes if chosen is None or s["date"] == chosen]}
            if m == 0:
                entry["date"] = chosen
            elif chosen is None:
                entry["date"] = None
                entry["missing_modality"] = source.modality_tag
            if entry["date"] is None:
                window = timedelta(days=SUGGEST_WITHIN_DAYS)
                wide_end = min(request.end + window, date.today())
                found, _ = _search(session, area, request.start - window, wide_end, maxcc)
                entry["nearest_dates"] = nearest(found, request)
        if any(e["date"] is None and not e["nearest_dates"] for e in entries):
            extent = collection_extent(session)
            if extent and not any(_overlaps(area, box) for box in extent):
                raise EngineError("area_outside_coverage", f"The area {[round(v, 5) for v in area]} lies outside "
                                  f"the coverage of {source.connector} / {session.name} (its extent: "
                                  f"{[[round(v, 5) for v in b] for b in extent]}).",
                                  "Draw the area inside the collection's coverage.")
    return entries


def refuse_missing(entries: list[dict[str, Any]], maxcc: float) -> None:
    """``no_data`` naming every date without data and the nearest dates that have some."""
    missing = [e for e in entries if e["date"] is None]
    if not missing:
        return
    parts = []
    for entry in missing:
        near = ", ".join(entry["nearest_dates"]) or f"none within {SUGGEST_WITHIN_DAYS} days"
        what = f" ({entry['missing_modality']} has no scene that day)" if entry.get("missing_modality") else ""
        parts.append(f"{entry['request']}{what}: nearest dates with data {near}")
    raise EngineError("no_data", "No scene over the area" + (f" below {maxcc:g}% cloud" if maxcc < 100 else "")
                      + " for " + "; ".join(parts) + ".",
                      "Pick one of the nearest dates, widen the dates to a range, or raise maxcc.")


def resolution_m(source: DataSource, workspace: Workspace) -> float:
    """The collection's pixel size in metres from the catalog (10 m when it does not say)."""
    from ..connectors import access

    try:
        entry = access.collection(source.connector, source.collection, workspace, None)
    except (EngineError, StopIteration):  # an unknown connector or collection is said by the search
        return 10.0
    return float(entry.get("resolution_m") or 10.0)
