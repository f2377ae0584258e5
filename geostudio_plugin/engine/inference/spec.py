"""The inference spec: the Studio's InferenceCreateInput / try-out payload, run locally.

Two ways to say what to predict: ``spatial_domain.urls`` (local GeoTIFFs; ``bbox`` crops them), or an area
(``spatial_domain.bbox`` and/or ``polygons``, EPSG:4326) with dates (``temporal_domain``), for which the engine
plans, checks availability, fetches the model's input data and masks the result (``post_processing``).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from ..device import PATTERN as DEVICE_PATTERN
from ..specs import MAX_BATCH, DataSource, DisplayName, HttpUrl, ItemId, PathOrUrl, StudioModel, _to_bool
from .plan import MAX_INFERENCE_AREA_SQ_KM, geometry_bbox, parse_date_entry

TEMPORAL_EACH = ("GeoStudio's, not in the Studio's payload: a temporal_domain range gives every day in it that has "
                 "data under maxcc (one output per day) instead of its clearest day")
MASKS = ("cloud_masking", "snow_ice_masking", "permanent_water_masking")  # what post_processing can switch on


class SpatialDomain(StudioModel):
    bbox: list[list[float]] = Field(default=[], description="[[minx, miny, maxx, maxy], ...] in EPSG:4326")
    polygons: list[dict[str, Any]] = []
    tiles: list[Any] = []
    urls: list[PathOrUrl] = Field(default=[], description="GeoTIFF paths or file:// URLs to predict on")

    @field_validator("bbox")
    @classmethod
    def _valid_boxes(cls, boxes: list[list[float]]) -> list[list[float]]:
        for box in boxes:
            if len(box) != 4:
                raise ValueError("each bbox needs 4 numbers: [minx, miny, maxx, maxy]")
            minx, miny, maxx, maxy = box
            if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
                raise ValueError(f"bbox {box} is empty, inverted or outside lon/lat bounds; "
                                 "give [minx, miny, maxx, maxy] in EPSG:4326 with min < max")
        return boxes

    @field_validator("polygons")
    @classmethod
    def _valid_polygons(cls, polygons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for n, geometry in enumerate(polygons):
            try:
                geometry_bbox(geometry)
            except ValueError as exc:
                raise ValueError(f"polygons[{n}]: {exc}") from None
        return polygons

    def areas(self) -> list[list[float]]:
        """The boxes to infer over: every bbox, then every polygon's bounding box."""
        return [list(b) for b in self.bbox] + [geometry_bbox(g) for g in self.polygons]


def post_processing_flags(value: Any) -> dict[str, Any]:
    """The Studio's post_processing with the masks as booleans ("True"/"False"/bool/None; a dict of settings
    means on); other keys are kept as given."""
    if not isinstance(value, dict):
        raise ValueError("post_processing must be an object such as {\"cloud_masking\": \"True\"}")
    flags = dict(value)
    for key in MASKS:
        raw = flags.get(key)
        flag = True if isinstance(raw, dict) else _to_bool(raw if raw is not None else False)
        if not isinstance(flag, bool):
            raise ValueError(f"post_processing.{key} is {raw!r}; give \"True\" or \"False\"")
        flags[key] = flag
    return flags


def check_temporal_domain(entries: list[str]) -> list[str]:
    for n, text in enumerate(entries):
        try:
            parse_date_entry(text)
        except ValueError as exc:
            raise ValueError(f"temporal_domain[{n}] {exc}") from None
    return entries


class InferSpec(StudioModel):
    model_display_name: DisplayName = ""
    model_id: ItemId = ""
    fine_tuning_id: ItemId = Field(default="", description="the tune to run (a tune id in the workspace)")
    description: str = ""
    location: str = ""
    spatial_domain: SpatialDomain
    temporal_domain: list[str] = []
    model_input_data_spec: Optional[list[DataSource]] = None
    geoserver_push: list[dict[str, Any]] = []
    post_processing: dict[str, Any] = {}
    # the Studio's API default; the availability check (check-availability) defaults to the UI's 80
    maxcc: float = Field(default=100, ge=0, le=100, description="maximum cloud cover of a scene, percent")
    endpoints: dict[str, HttpUrl] = Field(default={}, description="per connector: a STAC mirror or private catalogue")
    max_area_sq_km: float = Field(default=MAX_INFERENCE_AREA_SQ_KM, gt=0, le=1e7,
                                  description="refuse a larger area (bbox + polygons) before anything downloads")
    # GeoStudio additions
    output_path: Optional[PathOrUrl] = Field(default=None,
                                             description="also write the prediction of a single input here")
    device: str = Field(default="auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda, cuda:N or mps")
    batch_size: int = Field(default=16, ge=1, le=MAX_BATCH, description="tiles per forward call")
    confidence: bool = Field(default=True, description=(
        "segmentation: also write <stem>_confidence.tif, the top class's softmax probability in percent "
        "(uint8 0-100, nodata 255), loaded in QGIS as a grey layer switched off; regression ignores it"))
    block_size: int = Field(default=512, ge=256, le=8192, multiple_of=256, description=(
        "output rows finished and written at a time (pixels, a multiple of 256); memory grows with it"))
    temporal_each: bool = Field(default=False, description=TEMPORAL_EACH)

    _dates = field_validator("temporal_domain")(lambda cls, v: check_temporal_domain(v))
    _post = field_validator("post_processing", mode="before")(lambda cls, v: post_processing_flags(v or {}))

    @model_validator(mode="after")
    def _has_model_and_input(self) -> "InferSpec":
        if not (self.fine_tuning_id or self.model_id or self.model_display_name):
            raise ValueError("name the model: set fine_tuning_id (or model_id / model_display_name) to a tune id")
        domain = self.spatial_domain
        if not (domain.urls or domain.bbox or domain.polygons):
            raise ValueError("spatial_domain is empty: give urls (GeoTIFFs to predict on), or an area (bbox or "
                             "polygons) with temporal_domain dates")
        if self.is_area() and not self.temporal_domain:
            raise ValueError("temporal_domain is empty: an area (spatial_domain.bbox / polygons) needs dates, "
                             "such as [\"2024-07-25\"] or [\"2024-07-25_2024-07-27\"]")
        if self.output_path and len(domain.urls) != 1:
            raise ValueError("output_path works with exactly one input in spatial_domain.urls")
        return self

    def is_area(self) -> bool:
        """Inference over an area and dates (the engine fetches the input), not over given files."""
        return not self.spatial_domain.urls

    def masks(self) -> list[str]:
        """The masks post_processing switches on: "cloud", "snow_ice", "permanent_water"."""
        return [key.removesuffix("_masking") for key in MASKS if self.post_processing.get(key)]

    def model_ref(self) -> str:
        return self.fine_tuning_id or self.model_id or self.model_display_name
