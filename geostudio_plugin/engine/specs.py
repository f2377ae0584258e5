"""Pydantic pieces shared by the command specs, shaped like the Studio's payloads.

The Studio's UI sends numbers as strings (``"index": "0"``, ``"opacity": "0"``,
``"align_dates": "true"``); every field here accepts both, so a payload
written for the Studio validates unchanged.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Literal, Optional, TypeVar, Union, get_args, get_origin

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from .protocol import SpecError

M = TypeVar("M", bound=BaseModel)

# Bounds shared by the specs (issue 9: every numeric option has a range, and the message gives it)
MAX_SEED = 2**32 - 1
LABEL_ID_RANGE = {"ge": -(2**31), "le": 2**31 - 1}  # label rasters are at most int32
MAX_BAND_INDEX = 65535
MAX_CHIP = 8192  # pixels a side: chips and tiles
MAX_BATCH = 1024
MAX_DAYS = 365
Fraction = Annotated[float, Field(ge=0, le=1)]
Scale = Annotated[float, Field(gt=0, le=1e9)]


def literal_suffix(value: str) -> str:
    """A file-name ending matched literally: no folder part, no glob characters."""
    bad = sorted({c for c in value if c in "/\\*?[]" or ord(c) < 32})
    if bad:
        raise ValueError(f"the suffix {value!r} holds {' '.join(repr(c) for c in bad)}: a suffix is the end of a file "
                         "name, matched literally (no folder part, no wildcards), such as _S1Hand.tif")
    return value


ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


MAX_ID = 200  # ids and display names; a folder name may have 255 bytes


def _item_id(value: str) -> str:
    """An id of a workspace item (dataset, tune, run): a name, never a path; empty means unset."""
    if len(value) > MAX_ID:
        raise ValueError(f"an id has at most {MAX_ID} characters (this one has {len(value)})")
    if value and not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is an id, not a path: use the id as listed (letters, digits, '.', '_' and '-', "
                         "not starting with '.')")
    return value


def _display_name(value: str) -> str:
    """A display name that may be looked up as a folder name: no separators, not '.' or '..'."""
    if len(value) > MAX_ID:
        raise ValueError(f"a name has at most {MAX_ID} characters (this one has {len(value)})")
    if value and (any(c in value for c in "/\\\0") or value.strip() in (".", "..")):
        raise ValueError(f"{value!r} is a name, not a path: give the model's name or its tune id as listed")
    return value


MAX_PATH = 4096  # characters in a path or URL (Linux PATH_MAX)
MAX_NAME = 255  # bytes in one folder or file name (ext4, NTFS, APFS)


def _path_or_url(value: str) -> str:
    """A local path or a URL the engine can open: no NUL, not over-long, a URL that parses."""
    from urllib.parse import urlsplit

    if "\0" in value or any(ord(c) < 32 for c in value):
        raise ValueError("holds a control character (such as NUL); give a plain path or URL")
    if len(value) > MAX_PATH:
        raise ValueError(f"is {len(value)} characters long; a path or URL has at most {MAX_PATH}")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", value):
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"is not a valid URL ({exc})") from None
        path = parts.path if parts.scheme == "file" else ""
    else:
        path = value
    for part in re.split(r"[/\\]", path):
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME:
            raise ValueError(f"has a folder or file name of {len(part)} characters ({part[:20]}...); "
                             f"names have at most {MAX_NAME}")
    return value


def http_url(value: Optional[str]) -> Optional[str]:
    """An endpoint: an http(s) URL with a host that parses; empty means unset."""
    from urllib.parse import urlsplit

    if not value:
        return value
    if not re.match(r"^https?://", value, re.IGNORECASE):
        raise ValueError(f"{value!r} is not an http(s) URL; give one such as https://stac.example.org/v1")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
    if not parts.hostname or len(value) > MAX_PATH or any(ord(c) < 33 for c in value):
        raise ValueError(f"{value!r} is not a valid URL (no host, spaces or control characters)")
    return value


PathOrUrl = Annotated[str, Field(min_length=1), AfterValidator(_path_or_url)]
HttpUrl = Annotated[str, AfterValidator(http_url)]
Suffix = Annotated[str, Field(min_length=1), AfterValidator(literal_suffix)]
ItemId = Annotated[str, AfterValidator(_item_id)]
DisplayName = Annotated[str, AfterValidator(_display_name)]


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
    index: int = Field(ge=0, le=MAX_BAND_INDEX, description="0-based band index in the file")
    band_name: str = Field(min_length=1)
    RGB_band: Optional[Literal["R", "G", "B"]] = None
    scaling_factor: Scale = 1.0
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
    file_suffix: Suffix
    bands: list[Band] = Field(min_length=1)
    align_dates: bool = False
    scaling_factor: Optional[list[Scale]] = None  # legacy list form, one per band
    transform: Optional[str] = None

    _align = field_validator("align_dates", mode="before")(lambda cls, v: _to_bool(v))

    @field_validator("modality_tag")
    @classmethod
    def _tag_is_folder_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError("use up to 64 letters, digits, '_', '-' or '.', not starting with '.' (it names a folder "
                             "inside the dataset)")
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
    id: int = Field(**LABEL_ID_RANGE)
    name: str = Field(min_length=1)
    color: str = "#000000"
    opacity: float = Field(default=1.0, ge=0, le=1)
    weight: Optional[float] = Field(default=None, ge=0, le=1e6, description="class weight in the loss")
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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``Optional[list[Band]]`` -> [Band])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _bounds_of(metadata: list[Any], annotation: Any, item: bool) -> dict[str, Any]:
    """ge/gt/le/lt of a field, or of its items (``list[Fraction]``) when the error is on an item."""
    flat = [inner for m in metadata for inner in (getattr(m, "metadata", None) or [m])]  # FieldInfo in Annotated
    found = {k: getattr(m, k) for m in flat for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None}
    if item or not found:
        for arg in get_args(annotation):
            if get_origin(arg) is Annotated or hasattr(arg, "__metadata__"):
                found.update(_bounds_of(list(getattr(arg, "__metadata__", ())), None, False))
            elif get_origin(arg) in (list, Union) or get_args(arg):
                found.update(_bounds_of([], arg, item))
    return found


def range_text(bounds: dict[str, Any]) -> str:
    """``{"ge": 16, "le": 8192}`` -> "16 to 8192"; one-sided bounds in words."""
    low = (str(bounds["ge"]), "") if "ge" in bounds else (str(bounds["gt"]), "more than ") if "gt" in bounds else None
    high = (str(bounds["le"]), "") if "le" in bounds else (str(bounds["lt"]), "less than ") if "lt" in bounds else None
    if low and high and not low[1] and not high[1]:
        return f"{low[0]} to {high[0]}"
    words = [f"{low[1] or 'at least '}{low[0]}"] if low else []
    words += [f"{high[1] or 'at most '}{high[0]}"] if high else []
    return " and ".join(words)


def allowed_range(model: Optional[type[BaseModel]], loc: tuple[Any, ...]) -> str:
    """The allowed range of the field at ``loc`` in ``model`` ("16 to 8192"), or "" when it has none."""
    models, info, item = [model] if model else [], None, False
    for part in loc:
        if isinstance(part, int):
            item = True
            continue
        info = next((f for m in models for name, f in m.model_fields.items() if part in (name, f.alias)), None)
        if info is None:
            return ""
        models, item = _models_in(info.annotation), False
    return range_text(_bounds_of(list(info.metadata), info.annotation, item)) if info else ""


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def format_validation_error(exc: ValidationError, model: Optional[type[BaseModel]] = None) -> list[dict[str, str]]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        message = err.get("msg", "invalid").removeprefix("Value error, ")
        if err.get("type") in _RANGE_ERRORS:
            allowed = allowed_range(model, tuple(err.get("loc", ())))
            if allowed:
                message += f" (allowed: {allowed})"
        problems.append({"field": where, "message": message})
    return problems


def unknown_fields(model: type[BaseModel], data: Any, path: str = "") -> list[tuple[str, list[str]]]:
    """(dotted path, known names there) of every key of ``data`` that ``model`` ignores, nested models included.

    Models that keep extra keys (``extra="allow"``) are not asked about theirs, only about their fields' models.
    """
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, list[str]]] = []
    names = {name: name for name in model.model_fields}
    names.update({f.alias: name for name, f in model.model_fields.items() if f.alias})
    for key, value in data.items():
        where = f"{path}{key}"
        name = names.get(key) if isinstance(key, str) else None
        if name is None:
            if model.model_config.get("extra", "ignore") == "ignore":
                found.append((where, sorted(model.model_fields)))
            continue
        inner = _models_in(model.model_fields[name].annotation)
        if not inner:
            continue
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            found += unknown_fields(inner[0], item, f"{where}." if index is None else f"{where}.{index}.")
    return found


def warn_unknown_fields(model: type[BaseModel], data: Any, what: str) -> None:
    """One ``log`` warning per ignored key, naming the nearest known name (``chipsize`` -> ``chip_size``)."""
    from . import protocol

    for where, known in unknown_fields(model, data):
        key = where.rsplit(".", 1)[-1]
        nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if nearest:
            advice = f"did you mean {nearest[0]}?"
        else:
            advice = "known here: " + ", ".join(known[:15]) + (", ..." if len(known) > 15 else "")
        protocol.log(f"The {what} spec's field {where} is not one GeoStudio reads and is ignored; {advice}",
                     "warning")


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
    warn_unknown_fields(model, data, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc, model)
        listing = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:8])
        raise SpecError(
            "invalid_spec",
            f"The {what} spec has {len(problems)} problem{'s' if len(problems) > 1 else ''}: {listing}",
            "Fix the named fields and run again.",
            details=problems,
        ) from None
