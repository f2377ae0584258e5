"""A run folder shaped like the engine's area-and-dates inference (real GeoTIFFs, written with QGIS's GDAL).

Per date: ``<stem>_rgb.tif`` (uint8, 3 bands, true colour cut from the bundled MARIDA Sentinel-2 scene),
``<stem>_pred.tif`` (uint8 class ids, nodata 255), ``<stem>_masked.tif`` (int16, 999 cloud, 998 snow/ice,
997 permanent water, nodata -9999) and ``<stem>_confidence.tif`` (float32 0-1). No numpy: pixels are packed
with the standard library's ``array``, so the QGIS process stays as light as the plugin keeps it.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from conftest import REPO

SCENE = REPO / "resources" / "sample_data" / "marida" / "S2_14-9-18_16PCC_30.tif"
SIZE = 256  # the scene's size, 10 m pixels (UTM 16N)
CLASSES = [{"id": 0, "name": "Not water", "color": "#d9d9d9", "opacity": 0},
           {"id": 1, "name": "Water", "color": "#1f78b4", "opacity": 1}]
WATER = "#1f78b4"


def _water(row: int, col: int, shift: int) -> bool:
    return col + shift > row  # a diagonal shore that moves with the date


def _write(path: Path, gdal_type: int, bands: list[array], nodata: float | None) -> None:
    from osgeo import gdal

    scene = gdal.Open(str(SCENE))
    out = gdal.GetDriverByName("GTiff").Create(str(path), SIZE, SIZE, len(bands), gdal_type,
                                               ["COMPRESS=DEFLATE", "TILED=YES"])
    out.SetGeoTransform(scene.GetGeoTransform())
    out.SetProjection(scene.GetProjection())
    for n, pixels in enumerate(bands, start=1):
        band = out.GetRasterBand(n)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteRaster(0, 0, SIZE, SIZE, pixels.tobytes())
    out.FlushCache()
    out = None


def write_date(folder: Path, date: str, shift: int, confidence: bool = True) -> dict:
    from osgeo import gdal

    stem = f"area_{date}"
    rgb = folder / f"{stem}_rgb.tif"
    gdal.Translate(str(rgb), str(SCENE), bandList=[4, 3, 2], outputType=gdal.GDT_Byte,
                   scaleParams=[[0, 0.08, 0, 255]] * 3, creationOptions=["COMPRESS=DEFLATE"])
    pred, masked, conf = array("B"), array("h"), array("f")
    for row in range(SIZE):
        for col in range(SIZE):
            water = _water(row, col, shift)
            pred.append(1 if water else 0)
            value = 1 if water else 0
            if row < 32 and col < 32:
                value = 999  # a cloud in the north-west corner
            elif row < 32 and SIZE - 32 <= col:
                value = 998  # snow in the north-east corner
            elif SIZE - 16 <= row and col < 16:
                value = 997  # permanent water in the south-west
            elif SIZE - 8 <= row and SIZE - 8 <= col:
                value = -9999  # nodata in the south-east
            masked.append(value)
            conf.append(min(1.0, abs(col + shift - row) / 64.0))
    outputs = {"date": date, "inputs": [str(rgb)], "rgb": str(rgb),
               "prediction": str(folder / f"{stem}_pred.tif"), "masked": str(folder / f"{stem}_masked.tif")}
    _write(Path(outputs["prediction"]), gdal.GDT_Byte, [pred], 255)
    _write(Path(outputs["masked"]), gdal.GDT_Int16, [masked], -9999)
    if confidence:
        _write(folder / f"{stem}_confidence.tif", gdal.GDT_Float32, [conf], None)  # found by its name
    return outputs


def make_run(folder: Path, dates: tuple[str, ...] = ("2024-09-12", "2024-09-20"), confidence: bool = True) -> dict:
    """An ``inference.json``-shaped record of a run over ``dates``; its files are written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    outputs = [write_date(folder, date, 40 * n, confidence) for n, date in enumerate(dates)]
    return {"inference_id": "area-run-1", "tune_id": "tune-1", "model_display_name": "flood-resnet",
            "location": "Gulf of Honduras", "description": "MARIDA scene, test fixture", "temporal_domain": list(dates),
            "classes": CLASSES, "outputs": outputs, "seconds": 1.0, "device": "cpu",
            "post_processing": {"cloud_masking": True, "snow_ice_masking": True, "permanent_water_masking": True}}
