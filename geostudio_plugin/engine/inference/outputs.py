"""Write streamed prediction blocks to Cloud-Optimized GeoTIFFs.

Blocks arrive one at a time, so each output is first a tiled, compressed GeoTIFF under a hidden temporary
name, filled window by window; at the end GDAL's COG driver copies it into the final file (overviews, tile
order, ``LAYOUT=COG``) and the temporary file goes. Everything is written inside the run's staging folder,
which the engine renames into ``inferences/`` only when the whole run succeeded: a cancel leaves nothing.

- Segmentation: ``class_id`` holds the user's label ids as uint8 with nodata 255 where the input pixel is
  invalid. A label id above 254 (or below 0) does not fit uint8 beside the nodata value, so such a model gets
  int16 with nodata -9999 instead (the earlier format).
- Confidence (segmentation, optional, a separate ``<stem>_confidence.tif`` so QGIS styles it on its own):
  the top class's softmax probability in percent, uint8 0-100 (nodata 255): one byte a pixel and a 1 %
  step, plenty for a map of where the model is unsure (float32 would be 4x the size and slower to compress).
- Regression: float32 values as the model gives them (never rounded), nodata NaN.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import rasterio
import rasterio.shutil

from .streaming import Block

TILE = 256  # internal tiling of the temporary and final files (overviews start below this size)
CLASS_NODATA_U8 = 255
CLASS_NODATA_I16 = -9999
CONFIDENCE_NODATA = 255


def class_dtype(ids: list[int]) -> tuple[str, int]:
    """uint8/255 when every label id fits beside the nodata value, else int16/-9999."""
    if ids and min(ids) >= 0 and max(ids) <= 254:
        return "uint8", CLASS_NODATA_U8
    return "int16", CLASS_NODATA_I16


class PredictionWriter:
    """Open the temporary GeoTIFFs, take ``Block``s, then ``finish()`` into COGs. Counts pixels per class."""

    def __init__(self, folder: Path, stem: str, profile: dict[str, Any], width: int, height: int,
                 class_ids: Optional[list[int]], confidence: bool) -> None:
        self.regression = class_ids is None
        self.ids = np.asarray(class_ids or [], dtype=np.int64)
        self.prediction = folder / f"{stem}_pred.tif"
        self.confidence = folder / f"{stem}_confidence.tif" if confidence and not self.regression else None
        self.counts = np.zeros(len(self.ids), dtype=np.int64)
        self.cog_seconds = 0.0
        base = {k: profile[k] for k in ("crs", "transform") if k in profile}
        base.update(driver="GTiff", width=width, height=height, count=1, tiled=True, blockxsize=TILE,
                    blockysize=TILE, compress="DEFLATE", BIGTIFF="IF_SAFER")
        if self.regression:
            self.dtype, self.nodata = "float32", float("nan")
        else:
            self.dtype, self.nodata = class_dtype([int(i) for i in self.ids])
        self._files: list[tuple[Path, Any, str]] = []
        self._open(self.prediction, {**base, "dtype": self.dtype, "nodata": self.nodata,
                                     "predictor": 3 if self.regression else 2},
                   "value" if self.regression else "class_id", "average" if self.regression else "nearest")
        if self.confidence is not None:
            self._open(self.confidence, {**base, "dtype": "uint8", "nodata": CONFIDENCE_NODATA, "predictor": 2},
                       "confidence", "average")

    def _open(self, final: Path, profile: dict[str, Any], description: str, resampling: str) -> None:
        tmp = final.with_name(f".{final.name}.part.tif")
        dst = rasterio.open(tmp, "w", **profile)
        dst.set_band_description(1, description)
        self._files.append((final, dst, resampling))

    def write(self, block: Block) -> None:
        if self.regression:
            values = block.values
            self._window(0, block, values)
            return
        index = block.classes
        valid = index >= 0
        ids = np.where(valid, self.ids[np.clip(index, 0, None)], self.nodata).astype(self.dtype)
        self.counts += np.bincount(index[valid].ravel(), minlength=len(self.ids))[: len(self.ids)]
        self._window(0, block, ids)
        if self.confidence is not None:
            percent = np.where(valid, np.rint(np.nan_to_num(block.confidence) * 100), CONFIDENCE_NODATA)
            self._window(1, block, percent.astype("uint8"))

    def _window(self, k: int, block: Block, data: np.ndarray) -> None:
        from rasterio.windows import Window

        self._files[k][1].write(data, 1, window=Window(block.col0, block.row0, data.shape[1], data.shape[0]))

    def finish(self) -> None:
        """Close the temporary files and copy each into its COG (GDAL's COG driver), then remove it."""
        started = time.monotonic()
        for final, dst, resampling in self._files:
            tmp = Path(dst.name)
            dst.close()
            rasterio.shutil.copy(tmp, final, driver="COG", compress="DEFLATE", blocksize=TILE,
                                 predictor="YES", overview_resampling=resampling, num_threads="ALL_CPUS",
                                 bigtiff="IF_SAFER")
            tmp.unlink()
        self._files = []
        self.cog_seconds = time.monotonic() - started

    def close(self) -> None:
        """Drop what is left (after a failure or a cancel): no temporary file stays behind."""
        for _, dst, _ in self._files:
            dst.close()
            try:
                os.unlink(dst.name)
            except FileNotFoundError:
                pass
        self._files = []
