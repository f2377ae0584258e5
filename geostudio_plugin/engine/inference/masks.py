"""Post-processing masks, as the Studio's postprocess-generic step writes them (§4.3 of the reference).

The masked prediction (``<stem>_masked.tif``, the Studio's ``model_output_image_masked``) is int16 with nodata
-9999: the class ids where the scene is clear, 999 where it is cloud (or cloud shadow), 998 snow or ice, 997
permanent water, each only when ``post_processing`` asks for it and the collection has a mask band. The raw
prediction is left as it is. Where the prediction is nodata the masked output is nodata too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

CLOUD, SNOW_ICE, PERMANENT_WATER = 999, 998, 997
MASK_VALUES = {"cloud": CLOUD, "snow_ice": SNOW_ICE, "permanent_water": PERMANENT_WATER}
MASKED_NODATA = -9999

# Sentinel-2 Scene Classification: 3 cloud shadow, 6 water, 8/9 cloud medium/high probability, 11 snow or ice
SCL_CLASSES = {"cloud": (3, 8, 9), "snow_ice": (11,), "permanent_water": (6,)}
# HLS Fmask bits: 1 cloud, 3 cloud shadow, 4 snow/ice, 5 water
FMASK_BITS = {"cloud": (1, 3), "snow_ice": (4,), "permanent_water": (5,)}


def mask_band(collection: dict[str, Any]) -> Optional[tuple[str, str]]:
    """(band name, encoding) of the collection's mask band, when it has one GeoStudio can read."""
    masking = collection.get("cloud_masking") or {}
    band, encoding = masking.get("band"), masking.get("encoding")
    if band and encoding in ("sentinel2_scl", "hls_fmask"):
        return str(band), str(encoding)
    return None


def flags(mask: np.ndarray, encoding: str, kind: str, valid: np.ndarray) -> np.ndarray:
    """Where the mask band says ``kind`` ("cloud", "snow_ice", "permanent_water"), on its valid pixels."""
    if encoding == "sentinel2_scl":
        hit = np.isin(np.rint(mask).astype(np.int64), SCL_CLASSES[kind])
    else:
        bits = np.rint(mask).astype(np.int64)
        hit = np.zeros(mask.shape, dtype=bool)
        for bit in FMASK_BITS[kind]:
            hit |= (bits >> bit) & 1 == 1
    return hit & valid


def masked_prediction(prediction: np.ndarray, pred_nodata: Optional[float], mask: np.ndarray,
                      mask_valid: np.ndarray, encoding: str, kinds: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """(int16 masked prediction, pixels per mask). Water first, then snow, then cloud: cloud wins."""
    out = prediction.astype(np.int16)
    floating = np.issubdtype(prediction.dtype, np.floating)
    nodata = ~np.isfinite(prediction) if floating else np.zeros(prediction.shape, bool)
    if pred_nodata is not None and not np.isnan(pred_nodata):
        nodata |= prediction == pred_nodata
    counts = {}
    for kind in ("permanent_water", "snow_ice", "cloud"):
        if kind in kinds:
            hit = flags(mask, encoding, kind, mask_valid) & ~nodata
            out[hit] = MASK_VALUES[kind]
            counts[kind] = int(hit.sum())
    out[nodata] = MASKED_NODATA
    return out, counts


def write_masked(prediction_path: Path, mask: np.ndarray, mask_valid: np.ndarray, encoding: str,
                 kinds: list[str]) -> tuple[Path, dict[str, int]]:
    """Write ``<stem>_masked.tif`` beside the prediction (same grid); returns it and the pixels per mask."""
    import rasterio

    from ..rasters import write_geotiff

    with rasterio.open(prediction_path) as src:
        prediction = src.read(1)
        profile = {"crs": src.crs, "transform": src.transform, "driver": "GTiff"}
        nodata = src.nodata
    if mask.shape != prediction.shape:
        raise ValueError(f"mask {mask.shape} and prediction {prediction.shape} are not on one grid")
    out, counts = masked_prediction(prediction, nodata, mask, mask_valid, encoding, kinds)
    stem = prediction_path.stem.removesuffix("_pred")
    path = prediction_path.with_name(f"{stem}_masked.tif")
    write_geotiff(path, out[None], {**profile, "nodata": MASKED_NODATA})
    return path, counts
