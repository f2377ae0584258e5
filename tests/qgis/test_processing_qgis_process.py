"""The real command line: `qgis_process.bin` (Debian's `qgis_process` wrapper passes --noversioncheck, which 3.22
rejects) in a fresh profile with the packaged plugin enabled by `plugins enable`, as the README tells a server
user: Fetch imagery from the loopback STAC server, Run inference on raster layer on what it fetched, and Onboard
dataset on the bundled Sen1Floods11 chips; each output checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES
from test_package import install_zip_in_a_fresh_profile, qgis_process_command

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import MARIDA_CLASSES  # noqa: E402

MARIDA_ORDER = "coastal,blue,green,red,rededge1,rededge2,rededge3,nir"  # the bands the MARIDA model reads, 0-7

pytestmark = pytest.mark.skipif(qgis_process_command() is None, reason="needs qgis_process (Debian package qgis)")


@pytest.fixture(scope="module")
def command_line(tmp_path_factory, engine_python, marida_stac, marida_workspace, marida_tune):
    """qgis_process in a fresh profile: the plugin zip unpacked, enabled with `plugins enable`, the engine, the
    MARIDA model's workspace and the loopback catalogue set in the profile's settings as the dialogs set them."""
    from qgis.PyQt.QtCore import QSettings

    profiles, _ = install_zip_in_a_fresh_profile(tmp_path_factory.mktemp("qgis-process"))
    ini = profiles / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.write_text("")  # not enabled yet: `plugins enable` does it
    stored = QSettings(str(ini), QSettings.Format.IniFormat)
    stored.setValue("GeoStudio/engine/python", str(engine_python))
    stored.setValue("GeoStudio/workspace", str(marida_workspace))
    stored.setValue("GeoStudio/connectors/sentinel_aws/endpoint", marida_stac.stac_url)
    stored.sync()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QGIS_")},
           "QGIS_CUSTOM_CONFIG_PATH": str(profiles), "QT_QPA_PLATFORM": "offscreen"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([qgis_process_command(), *args], capture_output=True, text=True, env=env, timeout=300)

    enabled = run("plugins", "enable", "geostudio_plugin")
    assert enabled.returncode == 0, enabled.stdout[-2000:] + enabled.stderr[-2000:]
    return run


def results(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{"):])["results"]


@pytest.mark.engine_bound
def test_fetch_then_inference_from_the_command_line(command_line, marida_stac, marida_tune, tmp_path):
    """Fetch imagery over two patches in Web Mercator for a range: one raster per day with data, the server's
    pixels; then Run inference on raster layer on the first."""
    from osgeo import gdal
    from test_processing_data import BOTH, DAYS, assert_server_pixels, mercator, server_item

    area = mercator(BOTH)
    extent = f"{area.xMinimum()!r},{area.xMaximum()!r},{area.yMinimum()!r},{area.yMaximum()!r} [EPSG:3857]"
    fetched = results(command_line("--json", "run", "geostudio:fetch_imagery", "--", "CONNECTOR=sentinel_aws",
                                   "COLLECTION=sentinel-2-l2a", f"EXTENT={extent}", "START_DATE=2018-08-01",
                                   "END_DATE=2018-09-30", f"BANDS={MARIDA_ORDER}", f"OUTPUT={tmp_path / 'fetched'}"))
    rasters = [str(tmp_path / "fetched" / f"sentinel_aws_sentinel-2-l2a_{day}.tif") for day in DAYS]
    assert fetched["RASTERS"] == rasters and fetched["OUTPUT_RASTER"] == rasters[0]
    assert fetched["DATE_LIST"] == ",".join(DAYS) and fetched["OUTPUT"] == str(tmp_path / "fetched")
    assert sorted(str(p) for p in (tmp_path / "fetched").iterdir()) == rasters  # nothing else, no .part
    for day, path in zip(DAYS, rasters):
        source = gdal.Open(path)
        assert [source.GetRasterBand(i + 1).GetDescription() for i in range(source.RasterCount)] == \
            MARIDA_ORDER.split(",")
        assert_server_pixels(path, server_item(marida_stac, day), {2: 2, 3: 3, 4: 4, 8: 8}, BOTH)

    source = gdal.Open(rasters[0])
    predicted = results(command_line("--json", "run", "geostudio:infer_raster", "--", f"INPUT={rasters[0]}",
                                     f"MODEL={marida_tune}", f"OUTPUT={tmp_path / 'prediction.tif'}"))
    assert predicted["OUTPUT"] == str(tmp_path / "prediction.tif")
    prediction = gdal.Open(predicted["OUTPUT"])
    assert prediction.GetGeoTransform() == source.GetGeoTransform()  # the input's grid and CRS
    assert prediction.GetProjection() == source.GetProjection()
    assert (prediction.RasterXSize, prediction.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    band = prediction.GetRasterBand(1)
    classes = set(band.ReadRaster()) - {int(band.GetNoDataValue())}  # uint8 bytes (no numpy in this process)
    assert classes and classes <= set(range(1, len(MARIDA_CLASSES) + 1)), classes


@pytest.mark.engine_bound
def test_onboard_dataset_from_the_command_line(command_line, marida_workspace):
    onboarded = results(command_line(
        "--json", "run", "geostudio:onboard_dataset", "--", "NAME=command line water", f"SOURCE={SAMPLES / 'train'}",
        "PURPOSE=0", "LABEL_SUFFIX=_LabelHand.tif", "DATA_SUFFIX=_S1Hand.tif", "MODALITY=S1GRD", "BANDS=VV, VH",
        "CATEGORIES=0:Not water:#d9d9d9, 1:Water:#1f78b4", "IGNORE_ID=-1", "CHIP_SIZE=256"))
    folder = Path(onboarded["DATASET_FOLDER"])
    assert folder.parent == marida_workspace / "datasets"  # the profile's workspace setting
    record = json.loads((folder / "dataset.json").read_text())
    assert record["dataset_id"] == onboarded["DATASET_ID"] and record["dataset_name"] == "command line water"
    assert record["n_samples"] == 24 and record["modalities"] == ["S1GRD"]
    assert [c["name"] for c in record["classes"]] == ["Not water", "Water"]
