"""The inference planner: an area and dates become sub-areas x dates, as the Studio's planner splits them.

Pure functions (standard library only), so the rules are unit-tested without a server:
- dates: ``"YYYY-MM-DD"`` or ``"YYYY-MM-DD_YYYY-MM-DD"``; a date after today is refused (``dates_in_future``);
- polygons become their bounding box (the Studio buffers them; GeoStudio takes the plain box);
- the area is refused beyond a limit (``area_too_large``) before anything downloads;
- a box wider or taller than 2400 px at the collection's resolution is split into equal sub-boxes;
  one narrower or shorter than 224 px (the models' usual crop) is padded around its centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Optional, Sequence

from ..protocol import EngineError

MAX_INFERENCE_AREA_SQ_KM = 800.0  # the Studio UI advises 5-800 km²; its API caps at MAX_INFERENCE_AREA_SQ_KM
MAX_PX = 2400  # the Studio planner's largest sub-bbox side, in pixels of the collection
MIN_PX = 224  # the Studio planner pads smaller boxes to this many pixels
EARTH_RADIUS_KM = 6371.0088
M_PER_DEG_LAT = 111_320.0

Box = list[float]  # [minx, miny, maxx, maxy], EPSG:4326


@dataclass(frozen=True)
class DateRequest:
    """One ``temporal_domain`` entry: a day, or a range the inference takes its best date from."""

    text: str
    start: date
    end: date

    @property
    def is_range(self) -> bool:
        return self.end != self.start


def parse_date_entry(text: str) -> DateRequest:
    """``"2024-07-25"`` or ``"2024-07-25_2024-07-27"``; ValueError naming the entry otherwise."""
    start_text, sep, end_text = str(text).strip().partition("_")
    try:
        start = date.fromisoformat(start_text)
        end = date.fromisoformat(end_text) if sep else start
    except ValueError:
        raise ValueError(f"{text!r} is not 'YYYY-MM-DD' or 'YYYY-MM-DD_YYYY-MM-DD'") from None
    if end < start:
        raise ValueError(f"{text!r}: the end {end} is before the start {start}")
    return DateRequest(str(text).strip(), start, end)


def parse_dates(entries: Sequence[str], today: Optional[date] = None) -> list[DateRequest]:
    """Every entry parsed; a day (or a range's start) after today is ``dates_in_future``. A range that ends after
    today is cut at today."""
    today = today or date.today()
    requests = []
    for n, text in enumerate(entries):
        try:
            request = parse_date_entry(text)
        except ValueError as exc:
            raise EngineError("invalid_spec", f"temporal_domain[{n}] {exc}.",
                              "Give dates as YYYY-MM-DD or YYYY-MM-DD_YYYY-MM-DD.") from None
        if request.start > today:
            raise EngineError("dates_in_future", f"temporal_domain[{n}] {text!r} is after today ({today}): "
                              "no imagery exists for it yet.", f"Give dates up to {today}.")
        if request.end > today:
            request = DateRequest(request.text, request.start, today)
        requests.append(request)
    return requests


def geometry_bbox(geometry: Any) -> Box:
    """The bounding box of a GeoJSON geometry, Feature or FeatureCollection (lon/lat); ValueError if it has none
    or it encloses no area."""
    box = _bounds(geometry)
    if not (-180 <= box[0] <= box[2] <= 180 and -90 <= box[1] <= box[3] <= 90):
        raise ValueError(f"its bounds {box} are outside lon/lat (EPSG:4326)")
    if box[0] == box[2] or box[1] == box[3]:
        raise ValueError(f"its bounds {box} enclose no area")
    return box


def _bounds(geometry: Any) -> Box:
    if isinstance(geometry, dict) and geometry.get("type") == "FeatureCollection":
        boxes = [_bounds(f) for f in geometry.get("features") or []]
        if not boxes:
            raise ValueError("the FeatureCollection has no features")
        return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if not isinstance(geometry, dict) or "coordinates" not in geometry:
        raise ValueError("not a GeoJSON geometry (a dict with 'type' and 'coordinates')")
    xs, ys = [], []

    def walk(value: Any) -> None:
        if isinstance(value, (list, tuple)) and len(value) >= 2 and all(isinstance(v, (int, float)) for v in value[:2]):
            xs.append(float(value[0]))
            ys.append(float(value[1]))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(geometry["coordinates"])
    if not xs:
        raise ValueError("the geometry has no coordinates")
    return [min(xs), min(ys), max(xs), max(ys)]


def area_sq_km(box: Sequence[float]) -> float:
    """Area of a lon/lat box on a sphere of the Earth's mean radius."""
    minx, miny, maxx, maxy = box
    return (EARTH_RADIUS_KM ** 2 * math.radians(maxx - minx)
            * abs(math.sin(math.radians(maxy)) - math.sin(math.radians(miny))))


def check_area(boxes: Sequence[Sequence[float]], limit_sq_km: float) -> float:
    """The total area; ``area_too_large`` above the limit (before any download)."""
    total = sum(area_sq_km(b) for b in boxes)
    if total > limit_sq_km:
        raise EngineError("area_too_large", f"The inference area is {total:,.1f} km², above the limit of "
                          f"{limit_sq_km:,.1f} km² (max_area_sq_km).",
                          "Draw a smaller area, split it into several inferences, or raise max_area_sq_km.")
    return total


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(metres per degree of longitude, of latitude) at a latitude."""
    return M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 1e-6), M_PER_DEG_LAT


def plan_boxes(box: Sequence[float], resolution_m: float, max_px: int = MAX_PX, min_px: int = MIN_PX) -> list[Box]:
    """Sub-boxes of ``box``: split into equal parts where a side exceeds ``max_px`` pixels, padded around the
    centre where a side is under ``min_px`` (pixels of ``resolution_m`` metres)."""
    minx, miny, maxx, maxy = (float(v) for v in box)
    mx, my = metres_per_degree((miny + maxy) / 2)
    width_px, height_px = (maxx - minx) * mx / resolution_m, (maxy - miny) * my / resolution_m
    if width_px < min_px:
        half = min_px * resolution_m / mx / 2
        centre = (minx + maxx) / 2
        minx, maxx = max(centre - half, -180.0), min(centre + half, 180.0)
    if height_px < min_px:
        half = min_px * resolution_m / my / 2
        centre = (miny + maxy) / 2
        miny, maxy = max(centre - half, -90.0), min(centre + half, 90.0)
    cols, rows = max(1, math.ceil(width_px / max_px)), max(1, math.ceil(height_px / max_px))
    dx, dy = (maxx - minx) / cols, (maxy - miny) / rows
    return [[minx + c * dx, maxy - (r + 1) * dy, minx + (c + 1) * dx, maxy - r * dy]
            for r in range(rows) for c in range(cols)]


def union(boxes: Sequence[Sequence[float]]) -> Box:
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
