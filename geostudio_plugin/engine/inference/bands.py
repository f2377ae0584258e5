"""Does an input raster carry the bands a tuned model was trained on? Decided from names where the raster
has them, before the model is loaded (standard library only: the caller reads the raster's header).

- The raster names its bands (band descriptions, STAC ``eo:bands``/``sar`` names): every band the model reads
  must be where the model reads it. A band the raster lacks, or one in another position, is a clear mismatch:
  refused, naming both lists.
- The raster has no band names: too few bands is refused; a different count is a warning (the model reads the
  first bands by position, which may be right).

Band numbers in messages are QGIS's 1-based numbers; ``model_bands`` are the 0-based positions the model reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

GENERIC = re.compile(r"^(band|layer|channel)?[\s_-]*\d+$", re.IGNORECASE)  # "Band 1", "band_2", "3": no name
ALIASES = {"RED": "B4", "GREEN": "B3", "BLUE": "B2", "NIR": "B8", "NIR_NARROW": "B8A", "NIR08": "B8A",
           "SWIR1": "B11", "SWIR_1": "B11", "SWIR16": "B11", "SWIR2": "B12", "SWIR_2": "B12", "SWIR22": "B12",
           "COASTAL": "B1", "WATER_VAPOR": "B9", "CIRRUS": "B10"}


@dataclass
class BandCheck:
    """``code``/``message``/``hint`` set when refused; ``warnings`` when it may run."""

    code: str = ""
    message: str = ""
    hint: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.code)


def canonical(name: Optional[str]) -> str:
    """Compare band names loosely: case, spaces and zero padding aside (B02 = b2 = "B 02"), common aliases
    (red = B4) and polarisations (VV, vv). "" when the name is no name ("Band 3", empty)."""
    text = (name or "").strip()
    if not text or GENERIC.match(text):
        return ""
    key = re.sub(r"[\s\-]+", "_", text.upper())
    key = ALIASES.get(key, key)
    match = re.fullmatch(r"B_?0*(\d+A?)", key)
    return f"B{match.group(1)}" if match else key


def numbered(names: Sequence[Optional[str]], positions: Optional[Sequence[int]] = None) -> str:
    """"1 VV, 2 VH": QGIS's 1-based band numbers with their names."""
    positions = list(positions) if positions is not None else list(range(len(names)))
    return ", ".join(f"{p + 1} {names[i] or '(no name)'}" for i, p in enumerate(positions))


def check_bands(file_label: str, raster_names: Sequence[Optional[str]], model_names: Sequence[str],
                model_bands: Sequence[int], model_label: str) -> BandCheck:
    """``raster_names``: one entry per band of the file (None or "" where it has no name); ``model_names``: the
    names of the bands the model was trained on, in the order it reads them (may be empty); ``model_bands``:
    the 0-based positions in the file it reads them from."""
    count = len(raster_names)
    bands = list(model_bands) or list(range(len(model_names)))
    wanted = ", ".join(model_names) if model_names else f"{len(bands)} band(s)"
    fix = f"Predict on imagery with the bands {model_label} was trained on ({wanted}), in that order."
    if bands and count < max(bands) + 1:
        return BandCheck("band_count", f"{file_label} has {count} band(s); {model_label} reads "
                         f"band{'s' if len(bands) > 1 else ''} {', '.join(str(b + 1) for b in bands)} ({wanted}).", fix)
    keys = [canonical(n) for n in raster_names]
    named = [k for k in keys if k]
    model_keys = [canonical(n) for n in model_names]
    if not model_names or not all(model_keys) or len(model_keys) != len(bands):
        if count != len(bands):
            return BandCheck(warnings=[f"{file_label} has {count} band(s); {model_label} reads {len(bands)}: bands "
                                       f"{', '.join(str(b + 1) for b in bands)}. Check they are the ones it was "
                                       "trained on."])
        return BandCheck()
    if len(named) < count:  # no names (or some unnamed): bands are taken by position
        if count != len(bands) or named:
            read = ", ".join(f"{b + 1} as {n}" for b, n in zip(bands, model_names))
            return BandCheck(warnings=[f"{file_label} does not name {'its' if not named else 'all its'} "
                                       f"{count} band(s); {model_label} reads {read}. Check that these are its "
                                       f"{wanted} bands."])
        return BandCheck()
    where = {k: i for i, k in reversed(list(enumerate(keys)))}  # first position of each name
    if all(keys[b] == k for b, k in zip(bands, model_keys)):
        return BandCheck()
    raster_list = numbered(list(raster_names))
    missing = [n for n, k in zip(model_names, model_keys) if k not in where]
    if missing:
        return BandCheck("band_mismatch", f"{file_label} has bands {raster_list}; {model_label} was trained on "
                         f"{wanted} and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among them.",
                         fix + " Or fine-tune a model on this imagery's bands.")
    found = ", ".join(f"{n} is band {where[k] + 1}" for n, k in zip(model_names, model_keys))
    expected = ", ".join(f"{n} as band {b + 1}" for n, b in zip(model_names, bands))
    return BandCheck("band_mismatch", f"{file_label} has bands {raster_list}; {model_label} reads {expected}, but "
                     f"here {found}.", "Reorder the bands (Raster > Conversion > Translate, or Build Virtual Raster) "
                     f"so they read {wanted}.")


def check_inputs(paths: Sequence[str], record: dict[str, Any], positions: Sequence[int]) -> list[str]:
    """Every input against the tune's bands, from the rasters' headers (rasterio, no torch): raises EngineError
    for a refused one, returns the warnings for the rest. ``positions``: the 0-based file bands the model reads."""
    from ..rasters import raster_info

    names = [str(n) for n in ((record.get("data_spec") or {}).get("band_names") or [])]
    warnings = []
    for path in paths:
        info = raster_info(Path(path))
        check = check_bands(str(path), list(info.descriptions), names, positions, f"tune {record['tune_id']}")
        if check.refused:
            refuse(check.message, check.hint, check.code)
        warnings += check.warnings
    return warnings


def refuse(message: str, hint: str, code: str = "band_count") -> None:
    """Raise the refusal (band_count or band_mismatch, both in errors.py's table)."""
    from ..protocol import EngineError

    raise EngineError(code, message, hint)
