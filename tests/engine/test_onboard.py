"""``onboard``: pairing, checks, splits, statistics, label remapping, georeferencing, and clean failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from conftest import (EXIT_INPUT, TRAIN_DIR, TRAIN_STEMS, copy_samples, leftovers, onboarding_payload, run_engine,
                      run_ok)

SPLITS = ("train", "val", "test")


def _split_files(dataset_dir: Path) -> dict[str, list[str]]:
    return {name: (dataset_dir / "split_files" / f"{name}_data.txt").read_text().split() for name in SPLITS}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Any]:
    """The six training scenes onboarded whole (no chips), seed 0, 60/20/20."""
    workspace = tmp_path_factory.mktemp("scenes") / "ws"
    run = run_ok("onboard", onboarding_payload(), workspace)
    folder = Path(run.result["outputs"]["dataset_dir"])
    return {"workspace": workspace, "run": run, "dir": folder,
            "record": json.loads((folder / "dataset.json").read_text())}


@pytest.fixture(scope="module")
def chips_twice(tmp_path_factory) -> list[dict[str, Any]]:
    """The same payload (256 px chips, seed 0) onboarded twice into one workspace."""
    workspace = tmp_path_factory.mktemp("chips") / "ws"
    out = []
    for _ in range(2):
        run = run_ok("onboard", onboarding_payload(chip_size=256, seed=0), workspace)
        folder = Path(run.result["outputs"]["dataset_dir"])
        out.append({"run": run, "dir": folder, "record": json.loads((folder / "dataset.json").read_text())})
    return out


def test_layout(scenes):
    folder, record = scenes["dir"], scenes["record"]
    assert folder.parent == scenes["workspace"].resolve() / "datasets"
    assert folder.name == record["dataset_id"] == scenes["run"].result["summary"]["dataset_id"]
    assert record["status"] == "Succeeded" and record["n_samples"] == 6
    images = sorted(p.name for p in (folder / "training_data" / "S1GRD").iterdir())
    labels = sorted(p.name for p in (folder / "labels").iterdir())
    assert images == [f"{s}_S1Hand.tif" for s in TRAIN_STEMS]
    assert labels == [f"{s}_LabelHand.tif" for s in TRAIN_STEMS]
    assert sorted(p.name for p in (folder / "split_files").iterdir()) == sorted(f"{n}_data.txt" for n in SPLITS)
    params = record["training_params"]
    assert params["S1GRD"]["train_data_dir"] == "training_data/S1GRD"
    assert params["S1GRD"]["train_labels_dir"] == "labels"
    assert params["S1GRD"]["bands"] == [0, 1] and params["S1GRD"]["band_names"] == ["VV", "VH"]
    assert params["train_split_path"] == "split_files/train_data.txt"
    assert params["label_suffix"] == "*_LabelHand.tif" and params["S1GRD"]["file_suffix"] == "*_S1Hand.tif"
    assert params["classes"] == ["0", "1"]
    assert [c["id"] for c in record["classes"]] == [0, 1]
    assert leftovers(scenes["workspace"]) == []


def test_split_sizes_for_six_scenes(scenes):
    splits = _split_files(scenes["dir"])
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 1, "test": 1}
    assert sorted(sum(splits.values(), [])) == TRAIN_STEMS  # disjoint and complete
    assert splits == scenes["record"]["splits"]
    assert scenes["run"].result["summary"]["splits"] == {"train": 4, "val": 1, "test": 1}


def test_norm_stats_are_the_train_split_population_mean_and_std(scenes):
    record = scenes["record"]
    train = record["splits"]["train"]
    per_band: list[list[np.ndarray]] = [[], []]
    for stem in train:
        with rasterio.open(TRAIN_DIR / f"{stem}_S1Hand.tif") as src:
            data = src.read().astype(np.float64)
        for band in range(2):
            values = data[band]
            per_band[band].append(values[np.isfinite(values) & (values > -9999)])
    means = [float(np.concatenate(v).mean()) for v in per_band]
    stds = [float(np.concatenate(v).std()) for v in per_band]  # population (ddof=0)
    got = record["training_params"]["S1GRD"]
    assert got["norm_means"] == pytest.approx(means, rel=1e-4)
    assert got["norm_stds"] == pytest.approx(stds, rel=1e-4)
    # and not the statistics of all six scenes
    everything = []
    for stem in TRAIN_STEMS:
        with rasterio.open(TRAIN_DIR / f"{stem}_S1Hand.tif") as src:
            everything.append(src.read(1).astype(np.float64).ravel())
    everything = np.concatenate(everything)
    assert got["norm_means"][0] != pytest.approx(float(np.nanmean(everything)), rel=1e-4)


def test_written_scenes_keep_crs_transform_and_pixels(scenes):
    stem = TRAIN_STEMS[0]
    for sub, suffix in (("training_data/S1GRD", "_S1Hand.tif"), ("labels", "_LabelHand.tif")):
        with rasterio.open(TRAIN_DIR / f"{stem}{suffix}") as src, \
                rasterio.open(scenes["dir"] / sub / f"{stem}{suffix}") as out:
            assert out.crs == src.crs
            assert out.transform.almost_equals(src.transform, precision=1e-12)
            assert (out.width, out.height, out.count) == (src.width, src.height, src.count)
            if suffix == "_S1Hand.tif":
                np.testing.assert_array_equal(out.read(), src.read())
                assert out.descriptions == ("VV", "VH")


def test_split_is_deterministic(chips_twice):
    first, second = chips_twice
    assert first["record"]["dataset_id"] != second["record"]["dataset_id"]
    assert first["record"]["splits"] == second["record"]["splits"]
    assert _split_files(first["dir"]) == _split_files(second["dir"]) == first["record"]["splits"]
    # 6 scenes of 512 px -> 24 chips of 256 px, cut 60/20/20
    assert {k: len(v) for k, v in first["record"]["splits"].items()} == {"train": 14, "val": 5, "test": 5}
    every = sorted(sum(first["record"]["splits"].values(), []))
    assert every == sorted(f"{s}_r{r:02d}c{c:02d}" for s in TRAIN_STEMS for r in range(2) for c in range(2))


def test_chip_keeps_crs_and_offset_transform(chips_twice):
    folder = chips_twice[0]["dir"]
    stem = TRAIN_STEMS[1]
    for sub, suffix in (("training_data/S1GRD", "_S1Hand.tif"), ("labels", "_LabelHand.tif")):
        with rasterio.open(TRAIN_DIR / f"{stem}{suffix}") as src, \
                rasterio.open(folder / sub / f"{stem}_r00c01{suffix}") as chip:
            assert chip.crs == src.crs
            assert (chip.width, chip.height) == (256, 256)
            expected = src.transform @ src.transform.translation(256, 0)  # 256 columns to the right
            assert chip.transform.almost_equals(expected, precision=1e-12)
            assert chip.transform.c == pytest.approx(src.transform.c + 256 * src.transform.a, abs=1e-12)
            assert chip.transform.f == pytest.approx(src.transform.f, abs=1e-12)
            window = src.read(window=Window(256, 0, 256, 256))
            if suffix == "_S1Hand.tif":
                np.testing.assert_array_equal(chip.read(), window)
            else:  # labels are remapped to class indices; -1/0/1 map to themselves here
                np.testing.assert_array_equal(chip.read(1), window[0])


def test_label_values_are_remapped_to_class_indices(tmp_path: Path):
    """Labels 4/5/6 with categories 5 and 6 and ignore_id 4 are written as -1/0/1."""
    source = tmp_path / "shifted"
    source.mkdir()
    originals = {}
    for stem in TRAIN_STEMS:
        (source / f"{stem}_S1Hand.tif").write_bytes((TRAIN_DIR / f"{stem}_S1Hand.tif").read_bytes())
        with rasterio.open(TRAIN_DIR / f"{stem}_LabelHand.tif") as src:
            labels = src.read(1)
            profile = src.profile.copy()
        originals[stem] = labels
        with rasterio.open(source / f"{stem}_LabelHand.tif", "w", **profile) as dst:
            dst.write((labels + 5).astype(np.int16), 1)
    assert set(np.unique(np.concatenate([v.ravel() for v in originals.values()]))) == {-1, 0, 1}

    payload = onboarding_payload(source, ignore_id=4)
    payload["label_categories"] = [{"id": "5", "name": "Not water", "color": "#d9d9d9", "opacity": 0},
                                   {"id": "6", "name": "Water", "color": "#1f78b4", "opacity": 1}]
    workspace = tmp_path / "ws"
    run = run_ok("onboard", payload, workspace)
    folder = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((folder / "dataset.json").read_text())
    assert record["label_map"] == {"5": 0, "6": 1, "4": -1}
    assert [(c["index"], c["id"]) for c in record["classes"]] == [(0, 5), (1, 6)]
    seen = set()
    for stem, expected in originals.items():
        with rasterio.open(folder / "labels" / f"{stem}_LabelHand.tif") as out:
            written = out.read(1)
            assert out.dtypes[0] == "int16" and out.nodata == -1
        np.testing.assert_array_equal(written, expected)
        seen |= set(np.unique(written).tolist())
    assert seen == {-1, 0, 1}
    train_pixels = [c["train_pixels"] for c in record["classes"]]
    expected_counts = [int(sum((originals[s] == k).sum() for s in record["splits"]["train"])) for k in (0, 1)]
    assert train_pixels == expected_counts


# ------------------------------------------------------------------ bad input: clean failures, nothing left behind


def _write_like(path: Path, data: np.ndarray, profile: dict, **changes: Any) -> None:
    profile = {**profile, **changes}
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def case_missing_folder(tmp: Path) -> tuple[dict, list[str]]:
    missing = tmp / "no such folder"
    return onboarding_payload(missing), [str(missing)]


def case_no_label_file(tmp: Path) -> tuple[dict, list[str]]:
    payload = onboarding_payload(copy_samples(tmp / "src", TRAIN_STEMS[:3]))
    payload["label_suffix"] = "_Mask.tif"
    return payload, ["'_Mask.tif'", str(tmp / "src")]


def case_unpaired_image(tmp: Path) -> tuple[dict, list[str]]:
    folder = copy_samples(tmp / "src", TRAIN_STEMS[:3])
    (folder / "Extra_999_S1Hand.tif").write_bytes((folder / f"{TRAIN_STEMS[0]}_S1Hand.tif").read_bytes())
    return onboarding_payload(folder), ["Extra_999", "without a label"]


def case_size_mismatch(tmp: Path) -> tuple[dict, list[str]]:
    folder = copy_samples(tmp / "src", TRAIN_STEMS[:3])
    label = folder / f"{TRAIN_STEMS[1]}_LabelHand.tif"
    with rasterio.open(label) as src:
        data, profile = src.read(window=Window(0, 0, 500, 480)), src.profile.copy()
    label.unlink()
    _write_like(label, data, profile)
    return onboarding_payload(folder), [f"{TRAIN_STEMS[1]}_S1Hand.tif", label.name, "500x480"]


def case_crs_mismatch(tmp: Path) -> tuple[dict, list[str]]:
    folder = copy_samples(tmp / "src", TRAIN_STEMS[:3])
    label = folder / f"{TRAIN_STEMS[2]}_LabelHand.tif"
    with rasterio.open(label) as src:
        data, profile = src.read(), src.profile.copy()
    label.unlink()
    _write_like(label, data, profile, crs=CRS.from_epsg(3857))
    return onboarding_payload(folder), [f"{TRAIN_STEMS[2]}_S1Hand.tif", label.name, "3857"]


def case_too_few_bands(tmp: Path) -> tuple[dict, list[str]]:
    payload = onboarding_payload(copy_samples(tmp / "src", TRAIN_STEMS[:3]))
    payload["data_sources"][0]["bands"].append({"index": "2", "band_name": "VV/VH", "scaling_factor": 1})
    return payload, ["_S1Hand.tif", "2 band(s)", "index 2"]


def case_corrupt_tif(tmp: Path) -> tuple[dict, list[str]]:
    folder = copy_samples(tmp / "src", TRAIN_STEMS[:3])
    bad = folder / f"{TRAIN_STEMS[1]}_S1Hand.tif"
    bad.write_bytes(b"this is not a GeoTIFF at all\x00\x01\x02" * 64)
    return onboarding_payload(folder), [str(bad)]


def case_unknown_label_value(tmp: Path) -> tuple[dict, list[str]]:
    payload = onboarding_payload(copy_samples(tmp / "src", TRAIN_STEMS))
    payload["label_categories"] = [{"id": "0", "name": "Not water", "color": "#d9d9d9", "opacity": 0},
                                   {"id": "2", "name": "Something", "color": "#1f78b4", "opacity": 1}]
    return payload, ["_LabelHand.tif", str(tmp / "src"), "[1]"]


def case_empty_split(tmp: Path) -> tuple[dict, list[str]]:
    payload = onboarding_payload(copy_samples(tmp / "src", TRAIN_STEMS[:1]), split=[0.5, 0.5, 0.0])
    return payload, ["val", "empty", "1 samples"]


# The Studio's dataset-factory numbers and the names the engine gives them (README error table).
STUDIO_NAMES = {"0001": "dataset_source", "0002": "dataset_files", "0003": "dataset_dimensions",
                "0004": "dataset_pairing", "0005": "dataset_split", "0007": "dataset_bands", "0011": "dataset_params"}

BAD_CASES: dict[str, tuple[Callable[[Path], tuple[dict, list[str]]], str]] = {
    "missing-folder": (case_missing_folder, "0001"),
    "no-label-file": (case_no_label_file, "0002"),
    "unpaired-image": (case_unpaired_image, "0004"),
    "size-mismatch": (case_size_mismatch, "0003"),
    "crs-mismatch": (case_crs_mismatch, "0003"),
    "too-few-bands": (case_too_few_bands, "0007"),
    "corrupt-tif": (case_corrupt_tif, None),  # its code is checked by test_corrupt_tif_gets_a_studio_code
    "unknown-label-value": (case_unknown_label_value, "0011"),
    "empty-split": (case_empty_split, "0005"),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """Run one bad-input case once per module: (run, workspace, words the message must hold)."""
    cache: dict[str, Any] = {}

    def get(case: str):
        if case not in cache:
            tmp = tmp_path_factory.mktemp(case)
            payload, words = BAD_CASES[case][0](tmp)
            workspace = tmp / "ws"
            cache[case] = (run_engine("onboard", payload, workspace), workspace, words)
        return cache[case]

    return get


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_fails_cleanly(bad_run, case: str):
    run, workspace, words = bad_run(case)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.result is None
    error = run.error
    expected_code = BAD_CASES[case][1]
    if expected_code is not None:
        assert (error["code"], error["studio_code"]) == (STUDIO_NAMES[expected_code], expected_code), error
    for word in words:
        assert word in error["message"], f"{word!r} not in {error['message']!r}"
    assert error["hint"]
    assert (workspace / "datasets").is_dir()
    assert leftovers(workspace, "datasets") == [], "a failed onboarding left files behind"


def test_corrupt_tif_gets_a_studio_code(bad_run):
    run, _, _ = bad_run("corrupt-tif")
    assert run.returncode == EXIT_INPUT
    assert (run.error["code"], run.error["studio_code"]) == ("dataset_files", "0002"), run.error


def test_dataset_json_is_strict_json(scenes):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    json.loads((scenes["dir"] / "dataset.json").read_text(), parse_constant=refuse)
