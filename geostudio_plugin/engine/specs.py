"""Pydantic pieces shared by the command specs, shaped like the Studio's payloads.

The Studio's UI sends numbers as strings (``"index": "0"``, ``"opacity": "0"``,
``"align_dates": "true"``); every field here accepts both, so a payload
written for the Studio validates unchanged.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .protocol import SpecError

M = TypeVar("M", bound=BaseModel)


def non_finite(value: Any, path: str = "") -> list[tuple[str, float]]:
    """(dotted path, value) of every NaN or infinite number in a JSON-like value (dicts, lists, numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [hit for i, v in enumerate(value) for hit in non_finite(v, f"{path}.{i}" if path else str(i))]
    return []


def _non_finite_message(path: str, value: float) -> str:
    return f"{path} is {value}: give a finite number (NaN and infinity are not allowed)"


class StudioModel(BaseModel):
    """Ignore keys we do not use (Studio payloads carry many), strip strings; NaN and infinity are refused."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _finite_inside(cls, value: Any, info: ValidationInfo) -> Any:
        """Free-form fields (dicts, lists of Any) hold no NaN or infinity either (float fields: allow_inf_nan)."""
        if isinstance(value, (dict, list, tuple)):
            hits = non_finite(value, info.field_name or "")
            if hits:
                raise ValueError(_non_finite_message(*hits[0]))
        return value

    @model_validator(mode="after")
    def _finite_extras(self) -> "StudioModel":
        hits = non_finite(dict(self.__pydantic_extra__ or {}))
        if hits:
            raise ValueError(_non_finite_message(*hits[0]))
        return self


def _to_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", "", "none", "null"):
            return False
    return value


class Band(StudioModel):
    index: int = Field(ge=0, description="0-based band index in the file")
    band_name: str = Field(min_length=1)
    RGB_band: Optional[Literal["R", "G", "B"]] = None
    scaling_factor: float = 1.0
    description: str = ""

    @field_validator("RGB_band", mode="before")
    @classmethod
    def _empty_rgb(cls, value: Any) -> Any:
        return None if value in ("", None) else str(value).upper()

    @field_validator("scaling_factor", mode="before")
    @classmethod
    def _null_scale(cls, value: Any) -> Any:
        return 1.0 if value in ("", None) else value


class DataSource(StudioModel):
    connector: str = ""
    collection: str = ""
    modality_tag: str = Field(min_length=1, description="also the sub-folder name of this modality")
    file_suffix: str = Field(min_length=1)
    bands: list[Band] = Field(min_length=1)
    align_dates: bool = False
    scaling_factor: Optional[list[float]] = None  # legacy list form, one per band
    transform: Optional[str] = None

    _align = field_validator("align_dates", mode="before")(lambda cls, v: _to_bool(v))

    @field_validator("modality_tag")
    @classmethod
    def _tag_is_folder_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("use letters, digits, '_', '-' or '.' only (it names a folder)")
        return value

    def band_scales(self) -> list[float]:
        if self.scaling_factor and len(self.scaling_factor) == len(self.bands):
            return [float(s) for s in self.scaling_factor]
        return [b.scaling_factor for b in self.bands]

    def rgb_indices(self) -> list[int]:
        """Positions (within ``bands``) of the R, G and B bands, in that order; empty when not all are set."""
        roles = {b.RGB_band: i for i, b in enumerate(self.bands) if b.RGB_band}
        return [roles[c] for c in "RGB"] if all(c in roles for c in "RGB") else []


class LabelCategory(StudioModel):
    id: int
    name: str = Field(min_length=1)
    color: str = "#000000"
    opacity: float = Field(default=1.0, ge=0, le=1)
    weight: Optional[float] = None
    description: str = ""

    @field_validator("color")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", value):
            raise ValueError("use a hex colour such as #1f78b4")
        return value.lower()

    @field_validator("opacity", "weight", mode="before")
    @classmethod
    def _blank_number(cls, value: Any) -> Any:
        return None if value == "" else value


def format_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        problems.append({"field": where, "message": message})
    return problems


def parse_spec(model: type[M], data: Any, what: str) -> M:
    """Validate a spec; on failure raise a SpecError that names every bad field."""
    if not isinstance(data, dict):
        raise SpecError("invalid_spec", f"The {what} spec must be a JSON object, not {type(data).__name__}.",
                        "Wrap the fields in { ... }.")
    bad_numbers = non_finite(data)  # anywhere, free-form fields and keys the model ignores included
    if bad_numbers:
        problems = [{"field": path, "message": _non_finite_message(path, value)} for path, value in bad_numbers]
        raise SpecError("invalid_spec", f"The {what} spec has {len(problems)} non-finite number"
                        f"{'s' if len(problems) > 1 else ''}: " + "; ".join(p["message"] for p in problems[:8]),
                        "Replace NaN and Infinity with finite numbers (or leave the field out for its default).",
                        details=problems)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        listing = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:8])
        raise SpecError(
            "invalid_spec",
            f"The {what} spec has {len(problems)} problem{'s' if len(problems) > 1 else ''}: {listing}",
            "Fix the named fields and run again.",
            details=problems,
        ) from None
