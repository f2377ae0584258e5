"""The inference spec: the Studio's InferenceCreateInput / try-out payload, run locally."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator, model_validator

from ..device import PATTERN as DEVICE_PATTERN
from ..specs import MAX_BATCH, DataSource, DisplayName, ItemId, PathOrUrl, StudioModel


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
    maxcc: float = Field(default=100, ge=0, le=100)
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

    @model_validator(mode="after")
    def _has_model_and_input(self) -> "InferSpec":
        if not (self.fine_tuning_id or self.model_id or self.model_display_name):
            raise ValueError("name the model: set fine_tuning_id (or model_id / model_display_name) to a tune id")
        if not self.spatial_domain.urls:
            raise ValueError("spatial_domain.urls is empty: give the GeoTIFF(s) to predict on "
                             "(for imagery of an area, run `fetch` first and give its files)")
        if self.output_path and len(self.spatial_domain.urls) != 1:
            raise ValueError("output_path works with exactly one input in spatial_domain.urls")
        return self

    def model_ref(self) -> str:
        return self.fine_tuning_id or self.model_id or self.model_display_name
