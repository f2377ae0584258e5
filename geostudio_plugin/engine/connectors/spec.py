"""Specs of the connector commands: catalog options, availability search, fetch, connection test.

The search spec also takes the Studio's data-advice payload (POST /v2/data-advice/{connector}):
``collections``, ``dates`` ("start_end"), ``bbox`` as a list of boxes, ``maxcc``, ``pre_days``/``post_days``.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from ..specs import HttpUrl, StudioModel, http_url


def _bbox(value: Any) -> list[float]:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]  # the Studio sends [[minx, miny, maxx, maxy]]
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("give one bbox of 4 numbers: [minx, miny, maxx, maxy] in EPSG:4326")
    try:
        minx, miny, maxx, maxy = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"bbox {value} must hold 4 numbers") from None
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise ValueError(f"bbox {value} is outside lon/lat bounds; give EPSG:4326 degrees")
    if minx >= maxx or miny >= maxy:
        raise ValueError(f"bbox {value} is empty or inverted: minx must be < maxx and miny < maxy")
    return [minx, miny, maxx, maxy]


class ConnectorRef(StudioModel):
    connector: str = Field(min_length=1)
    endpoint: Optional[str] = Field(default=None, description="redirect a STAC connector (mirror, private catalogue)")

    @field_validator("endpoint")
    @classmethod
    def _http(cls, value: Optional[str]) -> Optional[str]:
        return http_url(value) or None


class CatalogSpec(StudioModel):
    check_access: bool = False
    discover: bool = Field(default=False, description="ask run-time catalogues (IBM Research STAC) for collections")
    endpoints: dict[str, HttpUrl] = {}
    credentials_configured: dict[str, bool] = Field(
        default={}, description="which connectors have credentials stored in QGIS (no secret values here)")
    timeout_s: float = Field(default=4.0, gt=0, le=60)


class SearchSpec(ConnectorRef):
    collection: str = ""
    collections: list[str] = []
    bbox: list[float]
    date_start: Optional[date] = None
    date_end: Optional[date] = None
    dates: list[str] = []
    maxcc: float = Field(default=80, ge=0, le=100, description="maximum cloud cover, percent")
    suggest_within_days: int = Field(default=120, ge=0, le=3650)
    pre_days: int = Field(default=0, ge=0, le=365)
    post_days: int = Field(default=0, ge=0, le=365)

    _box = field_validator("bbox", mode="before")(lambda cls, v: _bbox(v))

    @model_validator(mode="after")
    def _normalise(self) -> "SearchSpec":
        if not self.collection:
            if not self.collections:
                raise ValueError("name the collection (collection, or the Studio's collections list)")
            self.collection = self.collections[0]
        if self.dates and not self.date_start:
            start, _, end = self.dates[0].partition("_")
            try:
                self.date_start, self.date_end = date.fromisoformat(start), date.fromisoformat(end or start)
            except ValueError:
                raise ValueError(f"dates[0] {self.dates[0]!r} is not 'YYYY-MM-DD_YYYY-MM-DD' (start_end)") from None
        if not self.date_start or not self.date_end:
            raise ValueError("give date_start and date_end (YYYY-MM-DD), or dates ['start_end']")
        if self.date_end < self.date_start:
            raise ValueError(f"date_end {self.date_end} is before date_start {self.date_start}")
        return self


class FetchSpec(ConnectorRef):
    collection: str = Field(min_length=1)
    bbox: list[float]
    dates: list[date] = Field(min_length=1, description="one mosaic per date")
    bands: list[str] = Field(default=[], description="band names; default: the collection's R, G, B bands")
    maxcc: float = Field(default=100, ge=0, le=100)

    _box = field_validator("bbox", mode="before")(lambda cls, v: _bbox(v))

    @field_validator("dates", mode="before")
    @classmethod
    def _single_days(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [v.split("_")[0] if isinstance(v, str) else v for v in value]
        return value


class CheckSpec(ConnectorRef):
    timeout_s: float = Field(default=10.0, gt=0, le=120)
