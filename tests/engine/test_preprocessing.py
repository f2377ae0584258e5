"""Inference preprocesses as training did, read from the tune's deploy config (TerraTorch's own record)."""

from __future__ import annotations

import numpy as np

from geostudio_plugin.engine.inference.predict import Preprocessing, read_deploy_config


def _config(**data):
    base = {"dataset_bands": [0, 1, 2, 3], "output_bands": [3, 1], "means": [10.0, 20.0], "stds": [2.0, 4.0],
            "constant_scale": 0.5, "no_data_replace": 0}
    return {"data": {"init_args": {**base, **data}},
            "model": {"init_args": {"tiled_inference_parameters": {"h_crop": 64, "w_crop": 64}}}}


def test_bands_are_output_bands_placed_in_dataset_bands():
    assert Preprocessing.from_deploy_config(_config()).bands == [3, 1]
    assert Preprocessing.from_deploy_config(_config(dataset_bands=[5, 6, 7], output_bands=[7])).bands == [2]
    assert Preprocessing.from_deploy_config(_config(dataset_bands=None, output_bands=None)).bands == [0, 1]


def test_apply_fills_scales_and_normalises_like_the_datamodule():
    prep = Preprocessing.from_deploy_config(_config())
    data = np.array([[[40.0, 8.0]], [[80.0, 9.0]]], dtype=np.float32)  # 2 bands, 1x2 pixels
    valid = np.array([[True, False]])
    out = prep.apply(data.copy(), valid)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [(40 * 0.5 - 10) / 2, (80 * 0.5 - 20) / 4])
    np.testing.assert_allclose(out[:, 0, 1], [(0 - 10) / 2, (0 - 20) / 4])  # nodata -> 0 before scaling
    assert prep.tiles == {"h_crop": 64, "w_crop": 64}


def test_no_data_replace_none_keeps_nodata_as_nan():
    prep = Preprocessing.from_deploy_config(_config(no_data_replace=None))
    out = prep.apply(np.ones((2, 1, 2), dtype=np.float32), np.array([[True, False]]))
    assert np.isnan(out[:, 0, 1]).all() and np.isfinite(out[:, 0, 0]).all()


def test_the_trained_tunes_deploy_config_agrees_with_its_record(trained):
    record, tune_dir = trained["tune"], trained["tune_dir"]
    prep = Preprocessing.from_deploy_config(read_deploy_config(tune_dir, record))
    spec = record["data_spec"]
    assert prep.bands == spec["bands"]
    np.testing.assert_array_equal(prep.means.ravel(), np.float32(spec["norm_means"]))
    np.testing.assert_array_equal(prep.stds.ravel(), np.float32(spec["norm_stds"]))
    assert prep.constant_scale == spec["constant_scale"] and prep.no_data_replace == 0
    assert prep.tiles == record["tiled_inference_parameters"]
