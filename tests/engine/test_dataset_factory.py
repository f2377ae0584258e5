"""The dataset factory end to end: Studio payload shapes, archives and URLs, pre-scan, failures, from labels,
and TerraTorch fit runs configured only from dataset.json (one epoch, real CLI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import EXIT_INPUT, EXIT_INVALID_SPEC, REPO, run_engine, run_ok

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import flood_payload, marida_payload  # noqa: E402

MARIDA = REPO / "resources" / "sample_data" / "marida"
S1F = REPO / "resources" / "sample_data" / "sen1floods11"
@pytest.fixture()
def flood_folder(tmp_path) -> Path:
    folder = tmp_path / "flood"
    folder.mkdir()
    for path in (S1F / "train" / "Spain_7370579_S1Hand.tif", S1F / "train" / "Spain_7370579_LabelHand.tif",
                 S1F / "S2Hand" / "Spain_7370579_S2Hand.tif"):
        shutil.copy(path, folder / path.name)
    return folder


def studio(error: dict) -> tuple:
    """(code, studio_code) of an error event or failure record: the name and the Studio's number."""
    return error["code"], error.get("studio_code")


def terratorch_fit_one_epoch(dataset_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Build the config from dataset.json alone, then run the real `terratorch fit` CLI."""
    sys.path.insert(0, str(REPO))
    from geostudio_plugin.engine.datasets.training_config import fit_config

    config = tmp_path / "fit.yaml"
    config.write_text(yaml.safe_dump(fit_config(dataset_dir, tmp_path / "run", epochs=1)))
    terratorch = Path(sys.executable).with_name("terratorch")
    return subprocess.run([str(terratorch), "fit", "-c", str(config)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)


# ------------------------------------------------------------------ payload shapes


def test_marida_burn_scar_shape_onboards_and_trains_one_epoch(workspace, tmp_path):
    run = run_ok("onboard", marida_payload(MARIDA), workspace)
    folder = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((folder / "dataset.json").read_text())
    assert record["splits"] == {k: sorted(v) for k, v in record["splits"].items()}
    assert [len(v) for v in record["splits"].values()] == [3, 1, 1]
    assert len(record["classes"]) == 15 and record["label_map"]["0"] == -1 and record["label_map"]["15"] == 14
    params = record["training_params"]["S2L2A"]
    assert params["bands"] == [1, 2, 3, 8, 9, 10] and params["rgb_indices"] == [2, 1, 0]
    # labels: MARIDA id k -> class index k-1, not annotated (0) -> -1
    stem = record["splits"]["train"][0]
    source = rasterio.open(MARIDA / f"{stem}_cl.tif").read(1)
    written = rasterio.open(folder / "labels" / f"{stem}_cl.tif").read(1)
    assert np.array_equal(written, np.where(source == 0, -1, source - 1))
    fit = terratorch_fit_one_epoch(folder, tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=1` reached" in fit.stderr


def test_multimodal_flood_shape_onboards_and_trains_terramind_one_epoch(workspace, flood_folder, tmp_path):
    run = run_ok("onboard", flood_payload(flood_folder), workspace)
    folder = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((folder / "dataset.json").read_text())
    assert record["modalities"] == ["S2L1C", "S1GRD"]
    assert record["n_samples"] == 4 and all(record["splits"][s] for s in ("train", "val", "test"))
    tp = record["training_params"]
    assert tp["S1GRD"]["align_dates"] is True and tp["S2L1C"]["align_dates"] is False
    assert len(tp["S2L1C"]["norm_means"]) == 13 and len(tp["S1GRD"]["norm_means"]) == 2
    for tag, suffix in (("S2L1C", "_S2Hand.tif"), ("S1GRD", "_S1Hand.tif")):
        chips = sorted((folder / "training_data" / tag).glob(f"*{suffix}"))
        assert len(chips) == 4 and rasterio.open(chips[0]).shape == (256, 256)
    fit = terratorch_fit_one_epoch(folder, tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_epochs=1` reached" in fit.stderr


# ---------------------------------------------------------------- archives, URLs


def _zip_folder(folder: Path, target: Path, prefix: str = "marida/") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.glob("*.tif")):
            archive.write(path, prefix + path.name)
    return target


def test_zip_and_tar_sources_onboard_like_the_folder(workspace, tmp_path):
    from_folder = run_ok("onboard", marida_payload(MARIDA), workspace).result["summary"]["training_params"]
    archive = _zip_folder(MARIDA, tmp_path / "marida.zip")
    from_zip = run_ok("onboard", marida_payload(archive), workspace).result["summary"]["training_params"]
    tarball = tmp_path / "marida.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(MARIDA.glob("*.tif")):
            tar.add(path, f"data/{path.name}")
    from_tar = run_ok("onboard", marida_payload(f"file://{tarball}"), workspace).result["summary"]["training_params"]
    assert from_folder["S2L2A"]["norm_means"] == from_zip["S2L2A"]["norm_means"] == from_tar["S2L2A"]["norm_means"]
    assert not list((workspace / ".tmp").iterdir()), "the unpacked copies are removed"


def test_archive_member_escaping_the_folder_is_refused(workspace, tmp_path):
    archive = _zip_folder(MARIDA, tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("../../escaped.tif", b"not written")
        zipped.writestr("/tmp/absolute-escape.tif", b"not written")
    run = run_engine("onboard", marida_payload(archive), workspace)
    assert run.returncode == EXIT_INPUT and studio(run.error) == ("dataset_source", "0001")
    assert "../../escaped.tif" in run.error["message"] and "/tmp/absolute-escape.tif" in run.error["message"]
    assert not any(workspace.parent.rglob("escaped.tif")) and not any(tmp_path.parent.glob("escaped.tif"))
    assert not list((workspace / "datasets").iterdir())


def test_empty_archive(workspace, tmp_path):
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    run = run_engine("onboard", marida_payload(empty), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert studio(run.error) == ("dataset_source", "0001") and "empty.zip is empty" in run.error["message"]


class _Server:
    """A loopback HTTP server for archives; ``truncate`` cuts every body in half after its headers."""

    def __init__(self, root: Path) -> None:
        server = self
        self.truncate = False

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def copyfile(self, source, outputfile) -> None:
                data = source.read()
                outputfile.write(data[: len(data) // 2] if server.truncate else data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_url_source_downloads_and_a_broken_download_leaves_nothing(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_HTTP_TIMEOUT", "3")
    monkeypatch.setenv("GEOSTUDIO_HTTP_RETRIES", "1")
    _zip_folder(MARIDA, tmp_path / "marida.zip")
    server = _Server(tmp_path)
    try:
        run = run_ok("onboard", marida_payload(f"{server.url}/marida.zip"), workspace)
        assert run.result["summary"]["n_samples"] == 5
        server.truncate = True
        run = run_engine("onboard", marida_payload(f"{server.url}/marida.zip"), workspace, timeout=120)
    finally:
        server.close()
    assert run.returncode == EXIT_INPUT and studio(run.error) == ("dataset_source", "0001")
    assert "Downloading http://127.0.0.1" in run.error["message"]
    assert len(list((workspace / "datasets").iterdir())) == 1  # only the first, complete one
    assert not list((workspace / ".tmp").iterdir())


# ------------------------------------------------------------- pre-scan, failures


def test_prescan_answers_in_the_studio_shape_and_lists_every_problem(workspace, tmp_path):
    studio_body = {"dataset_url": str(MARIDA), "label_suffix": "_cl.tif", "training_data_suffixes": [".tif"]}
    summary = run_ok("prescan", studio_body, workspace).result["summary"]
    assert [b["id"] for b in summary[".tif"]] == [str(i) for i in range(11)]
    report = summary["report"]
    assert report["pairs"] == 5 and report["ok"] is True
    assert report["facts"][".tif"]["band_counts"] == [11] and report["facts"][".tif"]["crs"] == ["EPSG:32616"]
    assert report["label_values"] == [0, 1, 4, 5, 6, 7, 10, 12, 14, 15]  # the README table of the 5 patches

    broken = tmp_path / "broken"
    shutil.copytree(MARIDA, broken)
    (broken / "S2_3-11-16_16PDC_4_cl.tif").unlink()  # an image without its label
    (broken / "S2_14-9-18_16PCC_30.tif").write_bytes(b"not a tiff")  # a corrupt image
    report = run_ok("prescan", {**marida_payload(broken)}, workspace).result["summary"]["report"]
    codes = {p["code"] for p in report["problems"]}
    assert codes == {"dataset_files", "dataset_pairing"}, report["problems"]
    assert {p["studio_code"] for p in report["problems"]} == {"0002", "0004"}
    assert any("S2_3-11-16_16PDC_4" in p["message"] for p in report["problems"])
    assert any("S2_14-9-18_16PCC_30.tif" in p["message"] for p in report["problems"])
    assert not list((workspace / "datasets").iterdir()) and not (workspace / "failed").exists()


def test_a_failed_onboarding_keeps_its_reason_and_log_but_no_dataset(workspace, tmp_path):
    payload = marida_payload(MARIDA)
    payload["label_categories"] = [c for c in payload["label_categories"] if c["id"] not in ("7", "10")]
    run = run_engine("onboard", payload, workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert studio(run.error) == ("dataset_params", "0011")
    assert not list((workspace / "datasets").iterdir())
    listing = run_ok("list", None, workspace).result["summary"]
    failed, = listing["failed_datasets"]
    assert failed["status"] == "Failed" and studio(failed["error"]) == ("dataset_params", "0011")
    assert failed["name"] == "MARIDA marine debris"
    assert any("failed: [dataset_params]" in line for line in failed["log"])


def test_delete_removes_a_dataset(workspace):
    dataset = run_ok("onboard", marida_payload(MARIDA), workspace).result["summary"]["dataset_id"]
    run_ok("delete", {"kind": "datasets", "id": dataset}, workspace)
    assert not (workspace / "datasets" / dataset).exists()
    again = run_engine("delete", {"kind": "datasets", "id": dataset}, workspace)
    assert again.returncode == EXIT_INVALID_SPEC and again.error["code"] == "not_found", again.describe()


# -------------------------------------------------------------------- from labels


def test_from_labels_fetches_imagery_through_the_connector(workspace, tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from local_stac import LocalStac

    labels = tmp_path / "labels"
    labels.mkdir()

    def polygon(w, s, e, n):
        return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}

    (labels / "debris_2018-09-14.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": polygon(-88.180, 15.817, -88.170, 15.827)}]}))
    (labels / "debris_2018-08-30.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": polygon(-88.185, 15.779, -88.175, 15.789)}]}))
    with LocalStac(Path(sys.executable), tmp_path / "stac") as stac:
        payload = {
            "dataset_name": "debris from labels", "dataset_url": str(labels), "label_suffix": "_label.tif",
            "purpose": "Segmentation",
            "data_sources": [{"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                              "file_suffix": ".tif", "bands": [
                                  {"index": 0, "band_name": "red", "RGB_band": "R"},
                                  {"index": 1, "band_name": "green", "RGB_band": "G"},
                                  {"index": 2, "band_name": "blue", "RGB_band": "B"},
                                  {"index": 3, "band_name": "nir"}]}],
            "label_categories": [{"id": 0, "name": "Background"}, {"id": 1, "name": "Debris", "color": "#e31a1c"}],
            "onboarding_options": {"from_labels": True, "chip_size": 64, "endpoint": stac.stac_url, "post_days": 7},
        }
        run = run_ok("onboard", payload, workspace, timeout=300)
    folder = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((folder / "dataset.json").read_text())
    assert record["n_samples"] >= 5 and all(record["splits"].values())
    assert record["classes"][1]["train_pixels"] > 0  # the rasterised label polygons
    chips = sorted((folder / "training_data" / "S2L2A").glob("*.tif"))
    dates = {c.name.split("_")[3] for c in chips}  # tile_<g>_<n>_<date>_r<row>c<col>_S2L2A.tif
    assert dates == {"2018-08-30", "2018-09-14"}
    with rasterio.open(chips[0]) as chip:
        assert chip.count == 4 and chip.crs.to_epsg() == 4326 and chip.read(1).max() > 0


def test_from_labels_takes_dated_label_rasters(workspace, tmp_path):
    """label_type raster: pixels equal to 1 are the label; Terrakit polygonises them, we fetch and chip."""
    from local_stac import LocalStac
    from rasterio.transform import from_bounds

    labels = tmp_path / "labels"
    (labels / "september").mkdir(parents=True)  # nested, upper-case extension, label_type left to detection
    mask = np.zeros((100, 100), dtype="uint8")
    mask[25:50, 25:50] = 1  # two squares on a diagonal: half of their bounding box is labelled
    mask[50:75, 50:75] = 1
    with rasterio.open(labels / "september" / "debris_2018-09-14.TIF", "w", driver="GTiff", width=100, height=100,
                       count=1,
                       dtype="uint8", crs="EPSG:4326",
                       transform=from_bounds(-88.185, 15.812, -88.165, 15.832, 100, 100)) as dst:
        dst.write(mask, 1)
    with LocalStac(Path(sys.executable), tmp_path / "stac") as stac:
        payload = {
            "dataset_name": "debris from label rasters", "dataset_url": str(labels), "label_suffix": "_label.tif",
            "purpose": "Segmentation",
            "data_sources": [{"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                              "file_suffix": ".tif", "bands": [{"index": 0, "band_name": "red"}]}],
            "label_categories": [{"id": 0, "name": "Background"}, {"id": 1, "name": "Debris"}],
            "onboarding_options": {"from_labels": True, "chip_size": 64, "post_days": 7,
                                   "endpoint": stac.stac_url},
        }
        run = run_ok("onboard", payload, workspace, timeout=300)
    record = json.loads((Path(run.result["outputs"]["dataset_dir"]) / "dataset.json").read_text())
    labelled = sum(c["train_pixels"] for c in record["classes"] if c["id"] == 1)
    assert record["n_samples"] >= 2 and labelled > 0
    # imagery is fetched for the labels' bounding box, half of which is labelled
    labels_dir = Path(run.result["outputs"]["dataset_dir"]) / "labels"
    ones = total = 0
    for path in labels_dir.glob("*.tif"):
        with rasterio.open(path) as src:
            data = src.read(1)
        ones += int((data == 1).sum())
        total += int((data >= 0).sum())
    assert 0.4 < ones / total < 0.6


def test_from_labels_names_a_label_file_without_a_date(workspace, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "debris_2018-09-14.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (labels / "debris_september.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    payload = {"dataset_name": "undated", "dataset_url": str(labels), "label_suffix": "_label.tif",
               "data_sources": [{"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                                 "file_suffix": ".tif", "bands": [{"index": 0, "band_name": "red"}]}],
               "label_categories": [{"id": 0, "name": "Background"}, {"id": 1, "name": "Debris"}],
               "onboarding_options": {"from_labels": True}}
    run = run_engine("onboard", payload, workspace)
    assert run.returncode == EXIT_INPUT and studio(run.error) == ("dataset_files", "0002")
    assert "debris_september.geojson" in run.error["message"] and "YYYY-MM-DD" in run.error["hint"]
    assert not any((workspace / "datasets").glob("*"))  # no dataset (a missing folder globs to nothing)


def test_secondary_sources_are_resampled_with_their_nodata_kept_apart(tmp_path):
    """Integer (categorical) data: nearest neighbour, and an int32 nodata float32 cannot hold becomes -9999."""
    sys.path.insert(0, str(REPO))
    from geostudio_plugin.engine.datasets.from_labels import _warp_onto
    from rasterio.transform import from_bounds, from_origin

    categories = np.tile(np.array([3, 7], dtype="int32").repeat(20), (40, 1))
    categories[:, :4] = 2147483647  # nodata strip on the west edge
    source = tmp_path / "classes.tif"
    with rasterio.open(source, "w", driver="GTiff", width=40, height=40, count=1, dtype="int32", crs="EPSG:32616",
                       transform=from_origin(300000, 1750400, 10, 10), nodata=2147483647) as dst:
        dst.write(categories, 1)
    reference = tmp_path / "reference.tif"
    with rasterio.open(reference, "w", driver="GTiff", width=50, height=50, count=1, dtype="float32",
                       crs="EPSG:4326", transform=from_bounds(-88.868, 15.820, -88.863, 15.825, 50, 50)) as dst:
        dst.write(np.zeros((50, 50), dtype="float32"), 1)
    _warp_onto(source, reference, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(reference) as ref:
        assert (out.crs, out.transform, out.shape) == (ref.crs, ref.transform, ref.shape)
        values = out.read(1)
        assert out.nodata == -9999
    assert set(np.unique(values)) == {3.0, 7.0, -9999.0}  # no blend of categories, no nodata bleeding in


def test_from_labels_with_two_connectors_puts_every_modality_on_one_grid(workspace, tmp_path):
    """S2 bands from sentinel_aws and NDVI from IBM Research STAC (NetCDF): one dataset, aligned pixels."""
    from local_stac import LocalStac

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "debris_2018-09-14.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
            [-88.180, 15.817], [-88.170, 15.817], [-88.170, 15.827], [-88.180, 15.827], [-88.180, 15.817]]]}}]}))
    with LocalStac(Path(sys.executable), tmp_path / "stac") as stac:
        payload = {
            "dataset_name": "debris two sources", "dataset_url": str(labels), "label_suffix": "_label.tif",
            "purpose": "Segmentation",
            "data_sources": [
                {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                 "file_suffix": ".tif", "bands": [{"index": 0, "band_name": "red"}, {"index": 1, "band_name": "nir"}]},
                {"connector": "IBMResearchSTAC", "collection": "marida-ndvi", "modality_tag": "NDVI",
                 "file_suffix": "_ndvi.tif", "align_dates": "true", "bands": [{"index": 0, "band_name": "NDVI"}]}],
            "label_categories": [{"id": 0, "name": "Background"}, {"id": 1, "name": "Debris"}],
            "onboarding_options": {"from_labels": True, "chip_size": 64, "post_days": 7, "endpoints": {
                "sentinel_aws": stac.stac_url, "IBMResearchSTAC": stac.stac_url}},
        }
        run = run_ok("onboard", payload, workspace, timeout=300)
    folder = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((folder / "dataset.json").read_text())
    assert {"S2L2A", "NDVI"} <= set(record["training_params"])
    assert any(line.endswith(": dates S2L2A 2018-09-14, NDVI 2018-09-14") for line in record["log"]), record["log"]
    s2_chips = sorted((folder / "training_data" / "S2L2A").glob("*.tif"))
    ndvi_chips = sorted((folder / "training_data" / "NDVI").glob("*.tif"))
    assert len(s2_chips) == len(ndvi_chips) == record["n_samples"] >= 2
    checked = 0
    for s2_path, ndvi_path in zip(s2_chips, ndvi_chips):
        assert s2_path.name.replace("+S2L2A", "") == ndvi_path.name.replace("+NDVI", "")
        with rasterio.open(s2_path) as s2, rasterio.open(ndvi_path) as ndvi:
            assert (s2.crs, s2.transform, s2.shape) == (ndvi.crs, ndvi.transform, ndvi.shape)
            red, nir, index = s2.read(1).astype("float64"), s2.read(2).astype("float64"), ndvi.read(1)
        # The NetCDF NDVI was computed from the same scene's B04/B08: on the S2 grid the two must agree.
        valid = (red > 0) & (nir > 0) & (index > -9999)
        if valid.sum() < 100:
            continue
        # sentinel_aws through Terrakit gives L2A DN: reflectance = DN * 1e-4 - 0.1 (processing baseline 04.00)
        red, nir = red * 1e-4 - 0.1, nir * 1e-4 - 0.1
        assert np.median(np.abs((nir - red) / (nir + red) - index)[valid]) < 0.03
        checked += 1
    assert checked >= 1


def test_delete_refuses_ids_that_are_not_one_item(workspace):
    dataset = run_ok("onboard", marida_payload(MARIDA), workspace).result["summary"]["dataset_id"]
    for bad in (".", "..", "../datasets"):
        run = run_engine("delete", {"kind": "datasets", "id": bad}, workspace)
        # the spec's id pattern refuses them before any path is built
        assert run.returncode == EXIT_INVALID_SPEC and run.error["code"] == "invalid_spec", (bad, run.error)
    assert (workspace / "datasets" / dataset / "dataset.json").is_file()


def test_scenes_smaller_than_the_chip_are_padded_not_shrunk(workspace):
    payload = marida_payload(MARIDA)
    payload["onboarding_options"]["chip_size"] = 300  # MARIDA patches are 256 x 256
    folder = Path(run_ok("onboard", payload, workspace).result["outputs"]["dataset_dir"])
    chip_id = json.loads((folder / "dataset.json").read_text())["splits"]["train"][0]
    assert chip_id.endswith("_r00c00")  # one chip per patch
    stem = chip_id[: -len("_r00c00")]
    with rasterio.open(folder / "labels" / f"{chip_id}_cl.tif") as label, \
            rasterio.open(folder / "training_data" / "S2L2A" / f"{chip_id}.tif") as image, \
            rasterio.open(MARIDA / f"{stem}.tif") as source:
        assert label.shape == image.shape == (300, 300)
        assert image.transform == source.transform  # same origin and pixel size
        assert (label.read(1)[256:, :] == -1).all() and (label.read(1)[:, 256:] == -1).all()
        assert np.array_equal(image.read(1)[:256, :256], source.read(1))


def test_label_nodata_that_is_a_category_is_refused(workspace, tmp_path):
    folder = tmp_path / "nodata"
    shutil.copytree(MARIDA, folder)
    label = next(folder.glob("*_cl.tif"))
    with rasterio.open(label, "r+") as dst:
        dst.nodata = 7  # "Marine Water" would silently become no data
    run = run_engine("onboard", marida_payload(folder), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert studio(run.error) == ("dataset_params", "0011") and "nodata = 7" in run.error["message"]


def test_labels_on_another_grid_are_refused(workspace, tmp_path):
    folder = tmp_path / "shifted"
    shutil.copytree(MARIDA, folder)
    label = next(folder.glob("*_cl.tif"))
    with rasterio.open(label, "r+") as dst:
        dst.transform = dst.transform @ dst.transform.translation(3, 0)  # three pixels east
    run = run_engine("onboard", marida_payload(folder), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert studio(run.error) == ("dataset_dimensions", "0003") and "not on the same grid" in run.error["message"]
