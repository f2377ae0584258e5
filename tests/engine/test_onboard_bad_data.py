"""Onboarding bad or awkward data (issue 9): literal suffixes, padding that never enters the statistics,
scenes too small or constant, non-finite numbers, one label check for pre-scan and onboard, clear answers
for folders, renamed PNGs and missing CRSs, and big scenes (a memory budget, SIGTERM within 2 s)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import (EXIT_CANCELLED, EXIT_INPUT, TRAIN_DIR, TRAIN_STEMS, copy_samples,
                      engine_command, engine_env, leftovers, onboarding_payload, parse_stdout, run_engine, run_ok)

ALL_TRAIN = [1.0, 0.0, 0.0]


def _crop(target: Path, width: int, height: int, stems=TRAIN_STEMS) -> Path:
    """The sample pairs cropped to width x height (top-left corner), georeferencing kept."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        for suffix in ("_S1Hand.tif", "_LabelHand.tif"):
            with rasterio.open(TRAIN_DIR / f"{stem}{suffix}") as src:
                window = Window(0, 0, width, height)
                data = src.read(window=window)
                profile = src.profile.copy()
                profile.update(width=width, height=height, transform=src.window_transform(window))
                for key in ("blockxsize", "blockysize", "tiled"):
                    profile.pop(key, None)
            with rasterio.open(target / f"{stem}{suffix}", "w", **profile) as dst:
                dst.write(data)
    return target


def _write(path: Path, data: np.ndarray, crs="EPSG:32633", nodata=None, driver="GTiff") -> None:
    profile = dict(driver=driver, width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, nodata=nodata)
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(500000, 4000000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _pair(folder: Path, stem: str, image: np.ndarray, label: np.ndarray, **kw) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / f"{stem}_S1Hand.tif", image, nodata=float("nan"), **kw)
    _write(folder / f"{stem}_LabelHand.tif", label, nodata=-1)


def _noise(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(-12, 3, (2, size, size)).astype(np.float32)
    label = (rng.random((1, size, size)) > 0.5).astype(np.int16)
    return image, label


def _record(run) -> dict:
    return json.loads(Path(run.result["outputs"]["dataset_json"]).read_text())


# ---------------------------------------------------------------- 2: suffixes are literal, never globs


def test_suffix_with_glob_characters_is_matched_literally(tmp_path):
    from geostudio_plugin.engine.datasets.scan import scan

    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(2):
        image, label = _noise(i)
        _write(folder / f"s{i}_S1[Hand].tif", image)
        _write(folder / f"s{i}_Label*.tif", label, nodata=-1)
    report = scan(folder, "_Label*.tif", ["_S1[Hand].tif"])
    assert report.problems == [] and [s.stem for s in report.samples] == ["s0", "s1"]
    # a glob pattern as a suffix matches nothing (there is no file whose name ends with '**.tif')
    report = scan(folder, "_Label*.tif", ["**.tif"])
    assert any("'**.tif'" in m for _, m in report.problems), report.problems


@pytest.mark.parametrize("suffix", ["/Ghana_53713_S1Hand.tif", "**.tif", "../*_S1Hand.tif"])
def test_suffix_with_path_or_glob_characters_never_crashes(workspace, suffix):
    payload = onboarding_payload()
    payload["data_sources"][0]["file_suffix"] = suffix
    run = run_engine("onboard", payload, workspace)
    assert run.returncode in (3, EXIT_INPUT), run.describe()
    assert leftovers(workspace, "datasets") == []


# ---------------------------------------------------------------- 4: padding is nodata / ignore, never counted


def test_padding_never_enters_the_statistics(workspace, tmp_path):
    """Sen1Floods11 S1 cropped to 512 x 200, chip 256: the chips' statistics are the scenes' statistics."""
    folder = _crop(tmp_path / "cropped", 512, 200)
    whole = _record(run_ok("onboard", onboarding_payload(folder, name="whole", split=ALL_TRAIN), workspace))
    chips = _record(run_ok("onboard", onboarding_payload(folder, name="chips", chip_size=256, split=ALL_TRAIN),
                           workspace))
    a, b = whole["training_params"]["S1GRD"], chips["training_params"]["S1GRD"]
    np.testing.assert_allclose(b["norm_means"], a["norm_means"], rtol=1e-9)
    np.testing.assert_allclose(b["norm_stds"], a["norm_stds"], rtol=1e-9)
    assert a["norm_means"][0] < -10 and a["norm_means"][1] < -17  # dB backscatter, not pulled towards 0
    # the pixels counted per class are the scenes' pixels: padding is 'ignore', not a class
    assert [c["train_pixels"] for c in chips["classes"]] == [c["train_pixels"] for c in whole["classes"]]
    # the padded rows are nodata in the image and ignore (-1) in the label
    chip_dir = workspace / "datasets" / chips["dataset_id"]
    stem = TRAIN_STEMS[0]
    with rasterio.open(chip_dir / "training_data" / "S1GRD" / f"{stem}_r00c00_S1Hand.tif") as src:
        data = src.read()
        assert (src.width, src.height) == (256, 256) and math.isnan(src.nodata)
    assert np.isnan(data[:, 200:, :]).all()
    with rasterio.open(chip_dir / "labels" / f"{stem}_r00c00_LabelHand.tif") as src:
        assert (src.read(1)[200:, :] == -1).all()


# ---------------------------------------------------------------- 5: too small, zero variance


def test_scenes_smaller_than_the_smallest_chip_are_refused_by_name(workspace, tmp_path):
    folder = tmp_path / "tiny"
    for i in range(3):
        _pair(folder, f"big{i}", *_noise(i))
    _pair(folder, "tiny", np.full((2, 1, 1), -10, np.float32), np.zeros((1, 1, 1), np.int16))
    for chip in (None, 64):
        run = run_engine("onboard", onboarding_payload(folder, chip_size=chip), workspace)
        assert run.returncode == EXIT_INPUT, run.describe()
        assert "tiny_S1Hand.tif" in run.error["message"] and "1x1" in run.error["message"], run.error
        assert "big0" not in run.error["message"]
    assert leftovers(workspace, "datasets") == []
    report = run_ok("prescan", onboarding_payload(folder), workspace).result["summary"]["report"]
    assert report["ok"] is False and any("tiny_S1Hand.tif is 1x1" in p["message"] for p in report["problems"])


def test_a_constant_band_is_refused_naming_the_band_and_files(workspace, tmp_path):
    folder = tmp_path / "flat"
    for i in range(4):
        image, label = _noise(i)
        image[1] = -20.0  # VH constant everywhere
        _pair(folder, f"flat{i}", image, label)
    run = run_engine("onboard", onboarding_payload(folder, split=ALL_TRAIN), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    message = run.error["message"]
    assert "VH" in message and "flat0_S1Hand.tif" in message and "VV" not in message, message
    assert leftovers(workspace, "datasets") == []


# ---------------------------------------------------------------- 6: no NaN or infinity in dataset.json


def test_a_non_finite_number_is_never_stored_in_dataset_json(tmp_path, capsys):
    """Whatever got past the spec (a NaN weight here), the data side refuses to store it."""
    from geostudio_plugin.engine.datasets.onboard import onboard
    from geostudio_plugin.engine.datasets.spec import OnboardSpec
    from geostudio_plugin.engine.protocol import EngineError
    from geostudio_plugin.engine.workspace import Workspace

    payload = onboarding_payload()
    for category in payload["label_categories"]:
        category["weight"] = 1.0
    spec = OnboardSpec.model_validate(payload)
    spec.label_categories[1].weight = float("nan")
    workspace = Workspace(tmp_path / "ws")
    workspace.prepare()
    with pytest.raises(EngineError) as caught:
        onboard(spec, workspace)
    assert "class_weights" in caught.value.message, caught.value.message
    assert caught.value.exit_code == EXIT_INPUT
    assert not list((tmp_path / "ws" / "datasets").iterdir())
    assert not list((tmp_path / "ws" / ".tmp").iterdir())


# ---------------------------------------------------------------- 7: pre-scan and onboard share one label check


def test_prescan_refuses_non_integer_labels_like_onboard(workspace, tmp_path):
    folder = tmp_path / "halves"
    for i in range(3):
        image, label = _noise(i)
        _pair(folder, f"h{i}", image, label)
    image, _ = _noise(9)
    _write(folder / "h9_S1Hand.tif", image, nodata=float("nan"))
    _write(folder / "h9_LabelHand.tif", np.full((1, 64, 64), 0.5, np.float32))
    report = run_ok("prescan", onboarding_payload(folder), workspace).result["summary"]["report"]
    onboard = run_engine("onboard", onboarding_payload(folder), workspace)
    assert onboard.returncode == EXIT_INPUT and onboard.error["code"] == "dataset_params"
    assert report["ok"] is False, report
    assert [p["code"] for p in report["problems"]] == ["dataset_params"]
    assert "h9_LabelHand.tif" in report["problems"][0]["message"]
    assert "non-integer" in report["problems"][0]["message"] and "non-integer" in onboard.error["message"]


# ---------------------------------------------------------------- weak answers


class _Server:
    def __init__(self, root: Path) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_url_that_is_a_folder_is_named_as_a_folder(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_HTTP_RETRIES", "0")
    copy_samples(tmp_path / "site" / "train", TRAIN_STEMS[:2])
    server = _Server(tmp_path / "site")
    try:
        run = run_engine("onboard", onboarding_payload(f"{server.url}/train/"), workspace, timeout=120)
    finally:
        server.close()
    assert run.returncode == EXIT_INPUT and run.error["code"] == "dataset_source", run.describe()
    assert "folder" in run.error["message"] and "web page" in run.error["message"], run.error
    assert leftovers(workspace, "datasets") == []


def test_a_png_renamed_tif_is_not_a_geotiff(workspace, tmp_path):
    folder = copy_samples(tmp_path / "png", TRAIN_STEMS[:3])
    stem = TRAIN_STEMS[0]
    target = folder / f"{stem}_S1Hand.tif"
    target.unlink()
    _write(folder / "x.png", np.zeros((1, 512, 512), np.uint8), crs=None, driver="PNG")
    (folder / "x.png").rename(target)
    for path in folder.glob("x.png*"):
        path.unlink()
    for command in ("onboard", "prescan"):
        run = run_engine(command, onboarding_payload(folder), workspace)
        message = run.error["message"] if command == "onboard" else \
            " ".join(p["message"] for p in run.result["summary"]["report"]["problems"])
        assert "not a GeoTIFF" in message and f"{stem}_S1Hand.tif" in message and "PNG" in message, message
        assert "CRS" not in message and "None" not in message


def test_an_image_without_crs_beside_a_label_with_one(workspace, tmp_path):
    folder = tmp_path / "nocrs"
    for i in range(3):
        _pair(folder, f"c{i}", *_noise(i))
    image, _ = _noise(0)
    _write(folder / "c0_S1Hand.tif", image, crs=None, nodata=float("nan"))
    run = run_engine("onboard", onboarding_payload(folder), workspace)
    assert run.returncode == EXIT_INPUT and run.error["code"] == "dataset_dimensions", run.describe()
    message = run.error["message"]
    assert "None" not in message and "c0_S1Hand.tif has no CRS" in message and "EPSG:32633" in message, message


# ---------------------------------------------------------------- big scenes: memory budget and SIGTERM


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory) -> Path:
    """One 8000 x 8000 scene, two float32 bands (512 MB of pixels) and its label, plus two small scenes."""
    folder = tmp_path_factory.mktemp("big") / "src"
    folder.mkdir()
    rng = np.random.default_rng(0)
    size = 8000
    profile = dict(driver="GTiff", width=size, height=size, crs="EPSG:32633",
                   transform=from_origin(500000, 4000000, 10, 10), tiled=True, blockxsize=512, blockysize=512)
    with rasterio.open(folder / "big_S1Hand.tif", "w", count=2, dtype="float32", nodata=float("nan"),
                       **profile) as dst:
        for _, window in dst.block_windows(1):
            dst.write(rng.normal(-12, 3, (2, window.height, window.width)).astype(np.float32), window=window)
    with rasterio.open(folder / "big_LabelHand.tif", "w", count=1, dtype="uint8", nodata=255, **profile) as dst:
        for _, window in dst.block_windows(1):
            dst.write((rng.random((1, window.height, window.width)) > 0.5).astype(np.uint8), window=window)
    for i in range(2):
        _pair(folder, f"small{i}", *_noise(i, 256))
    return folder


def test_a_scene_over_the_memory_budget_is_refused_before_reading(workspace, big_scene, monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_MEMORY_BUDGET_MB", "256")
    started = time.monotonic()
    run = run_engine("onboard", onboarding_payload(big_scene), workspace)
    assert run.returncode == EXIT_INPUT and run.error["code"] == "dataset_too_large", run.describe()
    assert "big_S1Hand.tif" in run.error["message"] and "chip_size" in run.error["hint"], run.error
    assert "GEOSTUDIO_MEMORY_BUDGET_MB" in run.error["hint"]
    assert time.monotonic() - started < 20
    assert leftovers(workspace, "datasets") == []


def _sigterm_when(workspace: Path, payload: dict, marker: str, tmp_path: Path,
                  delay: float = 1.0) -> tuple[int, float, list]:
    """Start onboarding, send SIGTERM delay s after a stdout line holding marker; (exit, seconds to exit, events)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(payload))
    proc = subprocess.Popen(engine_command(workspace, "onboard", str(spec)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=engine_env(), cwd=str(tmp_path),
                            start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:  # wait for the stage to be reached
            lines.append(line)
            if marker in line:
                break
        time.sleep(delay)
        assert proc.poll() is None, "onboarding ended before it could be cancelled"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    events, _ = parse_stdout("".join(lines) + rest)
    return proc.returncode, elapsed, events


@pytest.mark.parametrize("chip_size, stage", [(None, "write"), (512, "write"), (None, "scan")])
def test_sigterm_during_a_big_onboarding_stops_within_two_seconds(workspace, big_scene, tmp_path, chip_size, stage):
    """Before: 26.6 s from SIGTERM to exit while the whole 8000 x 8000 scene was written (now ~0.3 s)."""
    payload = onboarding_payload(big_scene, chip_size=chip_size, split=[0.34, 0.33, 0.33] if not chip_size
                                 else [0.6, 0.2, 0.2])
    if stage == "write":  # the split is logged just before the writing begins
        code, elapsed, events = _sigterm_when(workspace, payload, "split (seed", tmp_path)
    else:  # pairing, reading headers and the label values of the big label
        code, elapsed, events = _sigterm_when(workspace, payload, '"stage": "scan"', tmp_path, delay=0.3)
    assert code == EXIT_CANCELLED, (code, events[-3:])
    assert elapsed < 2.0, elapsed
    assert events[-1]["event"] == "error" and events[-1]["code"] == "cancelled"
    assert leftovers(workspace, "datasets") == []


def test_prescan_with_a_suffix_that_matches_nothing_says_what_the_folder_holds(workspace, tmp_path):
    """A person who typed '_S1Hand.tif' for files named '_S1.tif' learns what the files do end in (issue 10)."""
    folder = tmp_path / "renamed"
    folder.mkdir()
    for i in range(3):
        image, label = _noise(i)
        _write(folder / f"r{i}_S1.tif", image)
        _write(folder / f"r{i}_LabelHand.tif", label, nodata=-1)
    report = run_ok("prescan", {"dataset_url": str(folder), "label_suffix": "_LabelHand.tif",
                                "training_data_suffixes": ["_S1Hand.tif"]}, workspace).result["summary"]["report"]
    assert report["ok"] is False
    message = next(p["message"] for p in report["problems"] if "'_S1Hand.tif'" in p["message"])
    assert "'_S1.tif' (3)" in message and "'_LabelHand.tif' (3)" in message, message
