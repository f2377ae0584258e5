"""The onboarding spec: the Studio's dataset onboarding v2 payload (GeoDatasetRequestSchemaV2)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..specs import (LABEL_ID_RANGE, MAX_CHIP, MAX_DAYS, MAX_SEED, DataSource, Fraction, LabelCategory, StudioModel,
                     HttpUrl, PathOrUrl, Suffix)


class OnboardingOptions(StudioModel):
    """The Studio reads only ``from_labels``; the rest are GeoStudio's options with Studio defaults."""

    from_labels: bool = False
    split: list[Fraction] = Field(default=[0.6, 0.2, 0.2], description="train, val, test fractions")
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    ignore_id: int = Field(default=-1, **LABEL_ID_RANGE,
                           description="label value that is not a class (TerraTorch ignore index)")
    chip_size: Optional[int] = Field(default=None, ge=16, le=MAX_CHIP, description="cut scenes into chips of this size")
    convert_to_cog: bool = True
    # from_labels: Terrakit fetches each label's imagery (the Studio's defaults)
    label_type: Optional[Literal["vector", "raster"]] = Field(
        default=None, description="from_labels: vector (GeoJSON) or raster labels; unset = what the source holds")
    pre_days: int = Field(default=0, ge=0, le=MAX_DAYS)
    post_days: int = Field(default=7, ge=0, le=MAX_DAYS)
    max_cloud_cover: float = Field(default=80, ge=0, le=100)
    endpoint: Optional[HttpUrl] = Field(default=None, description="redirect the first data source's STAC connector")
    endpoints: dict[str, HttpUrl] = Field(default={}, description="connector id -> STAC endpoint, for every source")

    def endpoint_for(self, connector_id: str, primary_connector: str) -> Optional[str]:
        """`endpoints` names each connector; the older single `endpoint` is the primary source's connector's."""
        return self.endpoints.get(connector_id) or (self.endpoint if connector_id == primary_connector else None)

    @field_validator("split")
    @classmethod
    def _three_fractions(cls, value: list[float]) -> list[float]:
        if len(value) != 3 or any(v < 0 for v in value) or abs(sum(value) - 1) > 1e-6:
            raise ValueError("give three non-negative fractions (train, val, test) that add up to 1")
        return value


class OnboardSpec(StudioModel):
    dataset_name: str = Field(min_length=1, max_length=200)
    description: Optional[str] = None
    dataset_url: PathOrUrl = Field(description="a local folder, a zip or tar archive, or an http(s) URL")
    label_suffix: Suffix
    purpose: Literal["Segmentation", "Regression"] = "Segmentation"
    data_sources: list[DataSource] = Field(min_length=1)
    label_categories: list[LabelCategory] = []
    training_params: Optional[dict] = None
    onboarding_options: OnboardingOptions = OnboardingOptions()
    version: str = "v2"

    @model_validator(mode="after")
    def _consistent(self) -> "OnboardSpec":
        suffixes = [s.file_suffix for s in self.data_sources]
        if self.label_suffix in suffixes:
            raise ValueError(f"label_suffix '{self.label_suffix}' equals a data source's file_suffix; "
                             "labels and images need different suffixes")
        if len(set(suffixes)) != len(suffixes):
            raise ValueError("two data sources share a file_suffix; give each modality its own")
        tags = [s.modality_tag.lower() for s in self.data_sources]
        if len(set(tags)) != len(tags):  # also folder names: S2 and s2 are one folder on Windows and macOS
            raise ValueError("two data sources share a modality_tag (case ignored); each modality needs its own tag")
        ids = [c.id for c in self.label_categories]
        if len(set(ids)) != len(ids):
            raise ValueError("label_categories has duplicate ids")
        if self.purpose == "Segmentation" and len(self.classes()) < 2:
            raise ValueError(
                f"Segmentation needs at least two label categories besides the ignore id "
                f"{self.onboarding_options.ignore_id} (found {len(self.classes())})")
        return self

    def classes(self) -> list[LabelCategory]:
        """Categories that are classes: all but the ignore id, sorted by id."""
        ignore = self.onboarding_options.ignore_id
        return sorted((c for c in self.label_categories if c.id != ignore), key=lambda c: c.id)

    def label_map(self) -> dict[int, int]:
        """User label id -> TerraTorch class index (0..N-1); the ignore id maps to -1."""
        mapping = {c.id: i for i, c in enumerate(self.classes())}
        mapping[self.onboarding_options.ignore_id] = -1
        return mapping
