"""Input bands against a tuned model's bands (issue 10 #4), pure: no raster, no torch."""

from __future__ import annotations

import pytest

from geostudio_plugin.engine.inference.bands import canonical, check_bands

S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def test_an_optical_image_through_a_radar_model_is_refused_naming_both_lists():
    check = check_bands("S2.tif", S2, ["VV", "VH"], [0, 1], "tune water")
    assert check.code == "band_mismatch"
    assert "1 B1, 2 B2" in check.message and "13 B12" in check.message  # the raster's bands, 1-based
    assert "trained on VV, VH" in check.message and "VV, VH are not among them" in check.message
    assert "VV, VH" in check.hint


def test_matching_names_pass_case_padding_and_aliases_aside():
    assert not check_bands("x.tif", ["vv", "VH"], ["VV", "VH"], [0, 1], "m").refused
    assert not check_bands("x.tif", ["B02", "B03", "B04"], ["Blue", "green", "B4"], [0, 1, 2], "m").refused
    assert not check_bands("x.tif", S2, ["B2", "B3", "B4"], [1, 2, 3], "m").refused
    assert canonical("B 08") == "B8" and canonical("b8a") == "B8A" and canonical("Band 3") == ""


def test_bands_in_another_order_are_refused_with_their_positions():
    check = check_bands("x.tif", ["VH", "VV"], ["VV", "VH"], [0, 1], "tune water")
    assert check.code == "band_mismatch"
    assert "reads VV as band 1, VH as band 2, but here VV is band 2, VH is band 1" in check.message


def test_too_few_bands_is_refused_with_1_based_numbers():
    check = check_bands("one.tif", [None], ["VV", "VH"], [0, 1], "tune water")
    assert check.code == "band_count"
    assert check.message == "one.tif has 1 band(s); tune water reads bands 1, 2 (VV, VH)."


@pytest.mark.parametrize("names", [[None] * 13, ["Band 1", "Band 2", "Band 3"], ["", ""] + [None]])
def test_unnamed_bands_with_another_count_are_a_warning(names):
    check = check_bands("x.tif", names, ["VV", "VH"], [0, 1], "tune water")
    assert not check.refused
    if len(names) == 2:
        assert not check.warnings
    else:
        assert check.warnings and "reads 1 as VV, 2 as VH" in check.warnings[0]


def test_unnamed_bands_with_the_same_count_pass_silently():
    assert check_bands("x.tif", [None, None], ["VV", "VH"], [0, 1], "m") == check_bands("x.tif", ["", ""], ["VV", "VH"], [0, 1], "m")
    assert not check_bands("x.tif", [None, None], ["VV", "VH"], [0, 1], "m").warnings


def test_a_model_without_band_names_checks_the_count_only():
    assert not check_bands("x.tif", ["a", "b"], [], [0, 1], "m").refused
    assert check_bands("x.tif", ["a", "b", "c"], [], [0, 1], "m").warnings
    assert check_bands("x.tif", ["a"], [], [0, 1], "m").code == "band_count"


# ----------------------------------------------------------------- from the rasters' headers (rasterio, no torch)
SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "resources" / "sample_data"
WATER = {"tune_id": "water-1", "data_spec": {"band_names": ["VV", "VH"], "bands": [0, 1]}}


def test_check_inputs_refuses_the_sentinel2_sample_for_a_radar_tune():
    from geostudio_plugin.engine.inference.bands import check_inputs
    from geostudio_plugin.engine.protocol import EngineError

    with pytest.raises(EngineError) as caught:
        check_inputs([str(SAMPLES / "sen1floods11" / "S2Hand" / "Spain_7370579_S2Hand.tif")], WATER, [0, 1])
    assert caught.value.code == "band_mismatch"
    assert "Spain_7370579_S2Hand.tif has bands 1 B1, 2 B2" in str(caught.value) and "VV, VH" in str(caught.value)


def test_check_inputs_passes_the_radar_sample_and_warns_on_unnamed_bands():
    from geostudio_plugin.engine.inference.bands import check_inputs

    assert check_inputs([str(SAMPLES / "sen1floods11" / "holdout" / "USA_905409_S1Hand.tif")], WATER, [0, 1]) == []
    warnings = check_inputs([str(SAMPLES / "marida" / "S2_14-9-18_16PCC_30.tif")], WATER, [0, 1])
    assert len(warnings) == 1 and "does not name its 11 band(s)" in warnings[0]
