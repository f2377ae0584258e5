"""Unit tests of the dataset factory's pure rules: pairing by stem, the seeded split, label mapping.

No engine process: each test calls the function itself on a few 4 x 4 rasters or plain lists (well under
a second). The end-to-end tests in test_onboard.py show the same rules through the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import REPO

sys.path.insert(0, str(REPO))
from geostudio_plugin.engine.datasets import scan as scan_module  # noqa: E402
from geostudio_plugin.engine.datasets.onboard import _remap_labels, split_items  # noqa: E402
from geostudio_plugin.engine.datasets.spec import OnboardSpec  # noqa: E402
from geostudio_plugin.engine.protocol import EngineError  # noqa: E402

IMAGE, LABEL = "_img.tif", "_lbl.tif"


def tiny(path: Path, value: int = 1, count: int = 1, width: int = 4, crs: str = "EPSG:32616") -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=width, height=4, count=count, dtype="int16", crs=crs,
                       transform=from_origin(300000, 1750000, 10, 10)) as dst:
        dst.write(np.full((count, 4, width), value, dtype="int16"))
    return path


def folder_of(tmp_path: Path, images: list[str], labels: list[str]) -> Path:
    for stem in images:
        tiny(tmp_path / f"{stem}{IMAGE}")
    for stem in labels:
        tiny(tmp_path / f"{stem}{LABEL}")
    return tmp_path


def codes(report) -> list[str]:
    return [code for code, _ in report.problems]


# ------------------------------------------------------------------------------------------------ pairing


def test_pairs_by_stem_once_the_suffixes_are_removed(tmp_path):
    root = folder_of(tmp_path, ["b_2", "a_1", "c_3"], ["c_3", "a_1", "b_2"])
    (root / "sub").mkdir()
    tiny(root / "sub" / f"d_4{IMAGE}")
    tiny(root / "sub" / f"d_4{LABEL}")
    (root / f".hidden{IMAGE}").write_bytes(b"")  # hidden files are not samples
    report = scan_module.scan(root, LABEL, [IMAGE])
    assert report.problems == []
    assert [s.stem for s in report.samples] == ["a_1", "b_2", "c_3", "d_4"]  # sorted, nested folders found
    for sample in report.samples:
        assert sample.label.name == f"{sample.stem}{LABEL}"
        assert sample.images == {IMAGE: sample.label.with_name(f"{sample.stem}{IMAGE}")}


def test_a_label_file_is_never_taken_for_an_image_whose_suffix_it_ends_with(tmp_path):
    # '.tif' (the image suffix) is also the end of '_lbl.tif': labels must not become images of stem 'x_lbl'
    for stem in ("x", "y"):
        tiny(tmp_path / f"{stem}.tif")
        tiny(tmp_path / f"{stem}{LABEL}")
    report = scan_module.scan(tmp_path, LABEL, [".tif"])
    assert report.problems == []
    assert [s.stem for s in report.samples] == ["x", "y"]


def test_images_without_labels_and_labels_without_images_are_each_named(tmp_path):
    root = folder_of(tmp_path, ["a", "b", "orphan"], ["a", "b", "lonely"])
    report = scan_module.scan(root, LABEL, [IMAGE])
    assert codes(report) == [scan_module.E_STEMS, scan_module.E_STEMS]
    missing, orphans = (m for _, m in report.problems)
    assert "1 label(s) without a '_img.tif' image: lonely" in missing
    assert "1 '_img.tif' image(s) without a label: orphan" in orphans
    assert [s.stem for s in report.samples] == ["a", "b"]  # the pairs that exist are still checked


def test_two_files_with_one_stem_in_different_folders_are_refused(tmp_path):
    root = folder_of(tmp_path, ["a"], ["a"])
    (root / "again").mkdir()
    tiny(root / "again" / f"a{IMAGE}")
    report = scan_module.scan(root, LABEL, [IMAGE])
    assert codes(report) == [scan_module.E_FILES]
    assert "share the stem 'a'" in report.problems[0][1]


def test_a_stem_inside_another_stem_is_refused(tmp_path):
    """TerraTorch matches split-file lines as substrings: 'tile_1' would also select 'tile_12'."""
    root = folder_of(tmp_path, ["tile_1", "tile_12"], ["tile_1", "tile_12"])
    report = scan_module.scan(root, LABEL, [IMAGE])
    assert codes(report) == [scan_module.E_STEMS]
    assert "'tile_1' is part of stem 'tile_12'" in report.problems[0][1]


def test_no_file_with_the_label_suffix(tmp_path):
    root = folder_of(tmp_path, ["a"], [])
    report = scan_module.scan(root, LABEL, [IMAGE])
    assert codes(report) == [scan_module.E_FILES]
    assert "label suffix '_lbl.tif'" in report.problems[0][1]
    with pytest.raises(EngineError) as raised:
        report.raise_first()
    assert raised.value.code == scan_module.E_FILES and raised.value.hint


def test_every_data_source_must_have_the_stem(tmp_path):
    root = folder_of(tmp_path, ["a", "b"], ["a", "b"])
    tiny(root / "a_s2.tif")  # the second source lacks b
    report = scan_module.scan(root, LABEL, [IMAGE, "_s2.tif"])
    assert codes(report) == [scan_module.E_STEMS]
    assert "1 label(s) without a '_s2.tif' image: b" in report.problems[0][1]
    assert [s.stem for s in report.samples] == ["a"]


def test_size_crs_and_band_count_are_checked_per_pair(tmp_path):
    tiny(tmp_path / f"wide{IMAGE}", width=5)
    tiny(tmp_path / f"wide{LABEL}")
    tiny(tmp_path / f"other{IMAGE}", crs="EPSG:3857")
    tiny(tmp_path / f"other{LABEL}")
    tiny(tmp_path / f"thin{IMAGE}", count=1)
    tiny(tmp_path / f"thin{LABEL}")
    report = scan_module.scan(tmp_path, LABEL, [IMAGE], band_need={IMAGE: 2})
    by_code: dict[str, list[str]] = {}
    for code, message in report.problems:
        by_code.setdefault(code, []).append(message)
    assert sorted(by_code) == sorted([scan_module.E_DIMENSIONS, scan_module.E_STATS])
    assert any("wide_img.tif is 5x4 but its label wide_lbl.tif is 4x4" in m for m in by_code[scan_module.E_DIMENSIONS])
    assert any("other_img.tif is in EPSG:3857" in m for m in by_code[scan_module.E_DIMENSIONS])
    assert any("thin_img.tif has 1 band(s)" in m for m in by_code[scan_module.E_STATS])


def test_label_values_outside_the_categories_are_named(tmp_path):
    tiny(tmp_path / f"a{IMAGE}")
    tiny(tmp_path / f"a{LABEL}", value=9)
    report = scan_module.scan(tmp_path, LABEL, [IMAGE], label_ids={3, 7, 0}, ignore_id=0)
    assert codes(report) == [scan_module.E_PARAMS]
    assert "[9]" in report.problems[0][1]
    assert report.label_values == [9]


# -------------------------------------------------------------------------------------------------- split


IDS = [f"s{i:03d}" for i in range(100)]


@pytest.mark.parametrize("fractions, sizes", [
    ([0.6, 0.2, 0.2], (60, 20, 20)),
    ([0.8, 0.1, 0.1], (80, 10, 10)),
    ([0.7, 0.3, 0.0], (70, 30, 0)),
    ([0.34, 0.33, 0.33], (34, 33, 33)),
])
def test_split_sizes_follow_the_fractions(fractions, sizes):
    splits = split_items(IDS, fractions, seed=0)
    assert tuple(len(splits[k]) for k in ("train", "val", "test")) == sizes
    assert sorted(sum(splits.values(), [])) == IDS  # disjoint and complete
    assert all(v == sorted(v) for v in splits.values())


def test_rounding_gives_train_the_remainder():
    splits = split_items(IDS[:7], [0.6, 0.2, 0.2], seed=0)  # 7 * 0.2 = 1.4 -> 1 each, train 5
    assert [len(splits[k]) for k in ("train", "val", "test")] == [5, 1, 1]


def test_split_is_deterministic_and_independent_of_input_order():
    first = split_items(IDS, [0.6, 0.2, 0.2], seed=3)
    assert split_items(list(reversed(IDS)), [0.6, 0.2, 0.2], seed=3) == first
    assert split_items(IDS, [0.6, 0.2, 0.2], seed=3) == first


def test_another_seed_gives_another_split_of_the_same_sizes():
    a, b = split_items(IDS, [0.6, 0.2, 0.2], seed=0), split_items(IDS, [0.6, 0.2, 0.2], seed=1)
    assert a != b
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}


@pytest.mark.parametrize("n", range(1, 40))
@pytest.mark.parametrize("fractions", [[0.6, 0.2, 0.2], [0.8, 0.1, 0.1], [0.5, 0.25, 0.25], [0.9, 0.05, 0.05]])
def test_every_split_is_disjoint_and_complete_or_refused(n, fractions):
    ids = [f"x{i}" for i in range(n)]
    try:
        splits = split_items(ids, fractions, seed=n)
    except EngineError as error:
        assert error.code == scan_module.E_SPLIT
        return
    every = sum(splits.values(), [])
    assert sorted(every) == sorted(ids) and len(set(every)) == n
    assert all(splits[k] for k, f in zip(("train", "val", "test"), fractions) if f > 0)


def test_the_split_is_shuffled_not_cut_in_order():
    splits = split_items(IDS, [0.6, 0.2, 0.2], seed=0)
    assert splits["train"] != IDS[:60]


@pytest.mark.parametrize("ids, fractions, empty", [
    (["a"], [0.5, 0.5, 0.0], "val"),
    (["a", "b"], [0.6, 0.2, 0.2], "val"),
    (["a", "b", "c"], [0.0, 0.5, 0.5], "train"),  # round(1.5) + round(1.5) > 3: train must not go negative
])
def test_a_split_left_empty_is_an_error(ids, fractions, empty):
    with pytest.raises(EngineError) as raised:
        split_items(ids, fractions, seed=0)
    assert raised.value.code == scan_module.E_SPLIT
    assert f"leaves the {empty}" in raised.value.message and raised.value.hint


# ---------------------------------------------------------------------------------------------- label map


def spec_with(categories: list[tuple], ignore_id: int) -> OnboardSpec:
    return OnboardSpec.model_validate({
        "dataset_name": "units", "dataset_url": "/nowhere", "label_suffix": LABEL,
        "data_sources": [{"modality_tag": "S1", "file_suffix": IMAGE, "bands": [{"index": 0, "band_name": "VV"}]}],
        "label_categories": [{"id": str(i), "name": n} for i, n in categories],
        "onboarding_options": {"ignore_id": ignore_id},
    })


def test_user_ids_map_to_class_indices_in_id_order_and_ignore_to_minus_one():
    # given out of id order, and names sort the other way round
    spec = spec_with([(7, "Clouds"), (255, "No data"), (3, "Water")], ignore_id=255)
    assert spec.label_map() == {3: 0, 7: 1, 255: -1}
    assert [(c.id, c.name) for c in spec.classes()] == [(3, "Water"), (7, "Clouds")]


def test_the_ignore_id_need_not_be_a_category():
    spec = spec_with([(1, "a"), (2, "b")], ignore_id=0)
    assert spec.label_map() == {1: 0, 2: 1, 0: -1}


def test_remap_writes_class_indices_and_minus_one_and_back():
    spec = spec_with([(7, "Clouds"), (3, "Water"), (0, "Not annotated")], ignore_id=0)
    raw = np.array([[3, 7, 0, 7], [7, 3, 3, 99]], dtype=np.int32)  # 99 is the file's nodata
    out = _remap_labels(raw, 99, spec.label_map(), Path("x_lbl.tif"))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, [[0, 1, -1, 1], [1, 0, 0, -1]])
    # and back: class index i is the i-th class of the record, whose id is the user's
    ids = np.array([c.id for c in spec.classes()])
    known = out >= 0
    np.testing.assert_array_equal(ids[out[known]], raw[known])


def test_remap_of_float_labels_with_nan():
    label_map = {3: 0, 7: 1, -1: -1}
    raw = np.array([[3.0, np.nan], [7.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(_remap_labels(raw, None, label_map, Path("f.tif")), [[0, -1], [1, -1]])


def test_remap_refuses_unknown_and_fractional_values():
    with pytest.raises(EngineError) as raised:
        _remap_labels(np.array([[3, 5, 9]]), None, {3: 0, 7: 1}, Path("u.tif"))
    assert raised.value.code == scan_module.E_PARAMS and "[5, 9]" in raised.value.message
    with pytest.raises(EngineError) as raised:
        _remap_labels(np.array([[3.0, 3.5]]), None, {3: 0, 7: 1}, Path("f.tif"))
    assert raised.value.code == scan_module.E_PARAMS and "non-integer" in raised.value.message
