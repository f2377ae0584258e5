"""Small rasterio helpers shared by onboarding and inference."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from .protocol import EngineError


@dataclass(frozen=True)
class RasterInfo:
    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: Optional[str]
    transform: tuple[float, ...]
    nodata: Optional[float]
    descriptions: tuple[Optional[str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "width": self.width, "height": self.height, "count": self.count,
            "dtype": self.dtype, "crs": self.crs, "nodata": self.nodata,
            "descriptions": list(self.descriptions),
        }


GEOTIFF_DRIVERS = ("GTiff", "COG")


def open_raster(path: Path, code: str = "unreadable_raster", geotiff: bool = False):
    """rasterio.open that names the file on failure; with geotiff, a file of another format (a PNG renamed
    .tif) is refused as 'not a GeoTIFF' rather than by whatever it lacks (a CRS, a geotransform)."""
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise EngineError(code, f"{path} is not a readable GeoTIFF: {exc}",
                          "Replace it with a valid GeoTIFF (check it opens in QGIS) or remove it.") from None
    if geotiff and src.driver not in GEOTIFF_DRIVERS and Path(path).suffix.lower() in (".tif", ".tiff"):
        driver = src.driver
        src.close()
        raise EngineError(code, f"{path} is not a GeoTIFF: it is a {driver} file with a .tif name",
                          "Export it as a GeoTIFF (e.g. QGIS > Export > Save As... GeoTIFF) or remove it.")
    return src


def read(src, path: Path, code: str = "unreadable_raster", **kwargs: Any) -> np.ndarray:
    """src.read(...) whose failures (a damaged block, a truncated file) name the file instead of crashing."""
    try:
        return src.read(**kwargs)
    except RasterioIOError as exc:
        raise EngineError(code, f"{path} cannot be read: {exc}",
                          "The file is damaged or incomplete; replace it with a valid GeoTIFF.") from None


def raster_info(path: Path, code: str = "unreadable_raster", geotiff: bool = False) -> RasterInfo:
    with open_raster(path, code, geotiff) as src:
        return RasterInfo(
            path=path, width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
            crs=src.crs.to_string() if src.crs else None, transform=tuple(src.transform)[:6],
            nodata=src.nodata, descriptions=tuple(src.descriptions),
        )


def chip_windows(width: int, height: int, size: int) -> Iterator[tuple[int, int, Window]]:
    """Non-overlapping size x size windows covering the scene; the last row/column is shifted back inside.
    A side shorter than size gets one window reaching past the edge: read it boundless (padded)."""
    def starts(extent: int) -> list[int]:
        if extent <= size:
            return [0]
        out = list(range(0, extent - size + 1, size))
        if out[-1] + size < extent:
            out.append(extent - size)
        return out

    for row, y in enumerate(starts(height)):
        for col, x in enumerate(starts(width)):
            yield row, col, Window(x, y, size, size)


@contextmanager
def geotiff_writer(path: Path, profile: dict[str, Any], count: int, width: int, height: int, dtype: str,
                   descriptions: Optional[list[Optional[str]]] = None) -> Iterator[Any]:
    """An open tiled, compressed GeoTIFF to fill window by window (memory stays bounded by the window, and
    every write is a short C call that releases the GIL); written to a temporary name, renamed on success."""
    profile = dict(profile)
    profile.update(driver="GTiff", count=count, width=width, height=height, dtype=dtype, compress="DEFLATE",
                   predictor=3 if np.issubdtype(np.dtype(dtype), np.floating) else 2, BIGTIFF="IF_SAFER")
    for key in ("blockxsize", "blockysize", "tiled", "interleave", "photometric"):
        profile.pop(key, None)
    if min(width, height) >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, text in enumerate(descriptions or [], start=1):
                if text:
                    dst.set_band_description(i, text)
            yield dst
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_geotiff(path: Path, data: np.ndarray, profile: dict[str, Any], cog: bool = False,
                  descriptions: Optional[list[Optional[str]]] = None) -> None:
    """Write (bands, rows, cols) to a temporary name, then rename: never a half-written file."""
    profile = dict(profile)
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2], dtype=data.dtype.name)
    for key in ("blockxsize", "blockysize", "tiled", "interleave", "photometric"):
        profile.pop(key, None)
    floating = np.issubdtype(data.dtype, np.floating)
    if cog:
        profile.update(driver="COG", compress="DEFLATE", predictor="YES",
                       blocksize=256 if min(data.shape[1:]) >= 256 else 128)
    else:
        profile.update(driver="GTiff", compress="DEFLATE", predictor=3 if floating else 2)
        if min(data.shape[1:]) >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, text in enumerate(descriptions or [], start=1):
                if text:
                    dst.set_band_description(i, text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
