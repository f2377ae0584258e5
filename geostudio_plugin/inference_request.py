"""An inference over an area and dates, as the Inference dock collects it (standard library only).

The dock reads its widgets once into an ``AreaRequest``; ``to_payload()`` gives the Studio-shaped inference
payload (``spatial_domain.bbox`` in EPSG:4326, ``temporal_domain``, ``maxcc``, ``post_processing``). The checks
a person can fix in the dock (dates, area, model) are here too, as plain functions, so their wording is tested
without QGIS.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from . import contract

#: post_processing switches, in the Studio's names, with the value each mask writes into ``*_masked.tif``.
MASKS: dict[str, int] = {"cloud_masking": 999, "snow_ice_masking": 998, "permanent_water_masking": 997}
DEFAULT_MAXCC = 80  # the Studio UI's availability check uses 80


def date_entry(start: _dt.date, end: Optional[_dt.date] = None) -> str:
    """One ``temporal_domain`` entry: ``YYYY-MM-DD`` for one day, ``YYYY-MM-DD_YYYY-MM-DD`` for a range."""
    if end is None or end == start:
        return start.isoformat()
    return f"{start.isoformat()}_{end.isoformat()}"


def date_problem(start: _dt.date, end: Optional[_dt.date], today: _dt.date) -> str:
    """What is wrong with the dates, naming the field, or "" (``end`` None: a single date)."""
    if start > today:
        return f"Start date: {start.isoformat()} is in the future (today is {today.isoformat()})."
    if end is not None:
        if end < start:
            return f"End date: {end.isoformat()} is before the start date {start.isoformat()}."
        if end > today:
            return f"End date: {end.isoformat()} is in the future (today is {today.isoformat()})."
    return ""


def bbox_problem(bbox: Optional[Sequence[float]]) -> str:
    """What is wrong with an EPSG:4326 bbox [minx, miny, maxx, maxy], naming the field, or ""."""
    if bbox is None:
        return "Area: none yet. Draw it on the map, use selected features, or type xmin,xmax,ymin,ymax."
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if not (maxx > minx and maxy > miny):
        return "Area: the rectangle is empty (no width or no height). Draw a larger one."
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        return f"Area: {minx:.4f}, {miny:.4f}, {maxx:.4f}, {maxy:.4f} is outside longitude/latitude bounds."
    return ""


def place_text(bbox: Sequence[float]) -> str:
    """The area's centre as a person reads it ("15.805° N, 88.170° W"): the run's place in its group name and
    map title when nothing better names it (GeoStudio has no geocoder)."""
    minx, miny, maxx, maxy = (float(v) for v in bbox)
    lon, lat = (minx + maxx) / 2, (miny + maxy) / 2
    return f"{abs(lat):.3f}° {'N' if lat >= 0 else 'S'}, {abs(lon):.3f}° {'E' if lon >= 0 else 'W'}"


@dataclass(frozen=True)
class AreaRequest:
    """A tuned model over an EPSG:4326 bbox and dates, with the cloud-cover limit and the masks asked for."""

    model: str  # a tune id
    bbox_4326: tuple[float, float, float, float]
    dates: tuple[str, ...]  # temporal_domain entries (see date_entry)
    maxcc: int = DEFAULT_MAXCC
    masks: Mapping[str, bool] = field(default_factory=lambda: {name: False for name in MASKS})
    device: str = "auto"
    description: str = ""
    location: str = ""
    every_date: bool = False  # a range gives every day with data (temporal_each), not its clearest day

    def problem(self) -> str:
        """The first thing to fix, naming the field, or ""."""
        if not self.model:
            return "Model: pick a tuned model first (fine-tune one in the Fine-tuning tab)."
        area = bbox_problem(self.bbox_4326)
        if area:
            return area
        if not self.dates:
            return "Dates: give a start date."
        if not 0 <= self.maxcc <= 100:
            return f"Max cloud cover: {self.maxcc} is not a percentage (0 to 100)."
        unknown = sorted(set(self.masks) - set(MASKS))
        if unknown:
            return f"Post-processing: unknown mask(s) {', '.join(unknown)}; known: {', '.join(MASKS)}."
        return ""

    def to_payload(self, endpoints: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
        """The Studio's inference payload for this request, through the contract's one builder."""
        return contract.infer_area_spec(self.model, self.bbox_4326, self.dates, maxcc=self.maxcc,
                                        post_processing={name: bool(self.masks.get(name, False)) for name in MASKS},
                                        device=self.device, description=self.description, location=self.location,
                                        endpoints=endpoints, temporal_each=self.every_date)

    def availability_payload(self, endpoints: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
        """``check-availability`` for the same model, area, dates and cloud limit."""
        return contract.availability_spec(self.model, self.bbox_4326, self.dates, maxcc=self.maxcc,
                                          endpoints=endpoints, temporal_each=self.every_date)
