"""The Prithvi Regression template on a real continuous target: NDWI from Sentinel-2, predicted from Sentinel-1.

The bundled data has no continuous labels, so the target is derived from real imagery: the Normalised
Difference Water Index NDWI = (green - nir) / (green + nir) of the bundled Sentinel-2 scene of Sen1Floods11
(Spain_7370579_S2Hand.tif: B3 green, B8 nir), written as a float32 label GeoTIFF (NaN where S2 has no data)
beside that scene's Sentinel-1 VV/VH chip. It is onboarded as a Regression dataset (32 px chips), the
Regression template trains Prithvi-EO-2.0-tiny (random init, CPU) on S1 -> NDWI through the engine's ``tune``
command (MSE loss, AdamW 5e-4, 4 epochs), and the validation RMSE must beat predicting the training split's
mean NDWI everywhere. Measured: val RMSE 0.47, 0.28, 0.21, 0.19 by epoch (64 px chips with lr 1e-3 or 1e-4 stayed
above the mean's 0.23 within 5 epochs).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import rasterio
from conftest import DEMO_ONBOARD, SAMPLES, TRAIN_DIR, run_engine, run_ok

SCENE = "Spain_7370579"
GREEN, NIR = 3, 8  # 1-based band numbers of B3 and B8 in the 13-band S2Hand chip


def write_ndwi_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TRAIN_DIR / f"{SCENE}_S1Hand.tif", folder / f"{SCENE}_S1Hand.tif")
    with rasterio.open(SAMPLES / "S2Hand" / f"{SCENE}_S2Hand.tif") as s2, \
            rasterio.open(TRAIN_DIR / f"{SCENE}_S1Hand.tif") as s1:
        assert s2.descriptions[GREEN - 1] == "B3" and s2.descriptions[NIR - 1] == "B8"
        assert (s2.width, s2.height, s2.transform, s2.crs) == (s1.width, s1.height, s1.transform, s1.crs)
        green, nir = (s2.read(b).astype(np.float64) for b in (GREEN, NIR))
        valid = (green != s2.nodata) & (nir != s2.nodata) & (green + nir > 0)
        ndwi = np.full(green.shape, np.nan, dtype=np.float32)
        ndwi[valid] = ((green - nir) / (green + nir))[valid]
        profile = {**s1.profile, "count": 1, "dtype": "float32", "nodata": float("nan")}
    target = folder / f"{SCENE}_NDWI.tif"
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(ndwi, 1)
        dst.set_band_description(1, "NDWI")
    return target


def test_prithvi_regression_beats_the_training_mean(tmp_path):
    write_ndwi_dataset(tmp_path / "ndwi")
    payload = json.loads(DEMO_ONBOARD.read_text())
    payload.update({"dataset_name": "S1 to NDWI", "purpose": "Regression", "label_suffix": "_NDWI.tif",
                    "dataset_url": str(tmp_path / "ndwi"), "label_categories": []})
    payload["onboarding_options"]["chip_size"] = 32  # 256 small chips: more steps per epoch for the same pixels
    workspace = tmp_path / "workspace"
    onboard = run_ok("onboard", payload, workspace)
    dataset_dir = Path(onboard.result["outputs"]["dataset_dir"])
    record = json.loads((dataset_dir / "dataset.json").read_text())
    assert record["purpose"] == "Regression" and record["classes"] == []

    def labels(split: str) -> np.ndarray:
        values = []
        for stem in record["splits"][split]:
            with rasterio.open(dataset_dir / "labels" / f"{stem}_NDWI.tif") as src:
                assert src.dtypes[0] == "float32"
                band = src.read(1)
            values.append(band[np.isfinite(band)])
        return np.concatenate(values)

    train, val = labels("train"), labels("val")
    assert train.size and val.size and -1 <= train.min() < train.max() <= 1
    baseline_rmse = math.sqrt(float(np.mean((val - train.mean()) ** 2)))

    spec = {"name": "ndwi-from-s1", "dataset_id": record["dataset_id"], "base_model_id": "Prithvi_EO_V2_tiny_TL",
            "tune_template_id": "Regression", "device": "cpu",
            "model_parameters": {"runner": {"max_epochs": 4, "early_stopping_patience": 0},
                                 "data": {"batch_size": 8},
                                 "optimizer": {"lr": 5e-4, "type": "AdamW"},
                                 "model": {"decode_head": {"decoder": "UNetDecoder", "channels": 32,
                                                           "loss_decode": {"type": "MSELoss"}}}}}
    run = run_engine("tune", spec, workspace, timeout=900)
    assert run.returncode == 0, run.describe()
    config = Path(run.result["outputs"]["config"]).read_text()
    assert "GenericNonGeoPixelwiseRegressionDataModule" in config and "PixelwiseRegressionTask" in config
    assert "loss: mse" in config
    rmse = [m["value"] for m in run.of("metric") if m["name"] == "val/RMSE"]
    assert len(rmse) == 4, sorted({m["name"] for m in run.of("metric")})
    assert min(rmse) < baseline_rmse, (rmse, baseline_rmse)


def test_segmentation_template_on_regression_dataset_names_regression_templates(tmp_path):
    write_ndwi_dataset(tmp_path / "ndwi")
    payload = json.loads(DEMO_ONBOARD.read_text())
    payload.update({"dataset_name": "S1 to NDWI", "purpose": "Regression", "label_suffix": "_NDWI.tif",
                    "dataset_url": str(tmp_path / "ndwi"), "label_categories": []})
    payload["onboarding_options"]["chip_size"] = 256
    workspace = tmp_path / "workspace"
    dataset_id = run_ok("onboard", payload, workspace).result["summary"]["dataset_id"]
    spec = {"name": "wrong-purpose", "dataset_id": dataset_id, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "device": "cpu"}
    run = run_engine("tune", spec, workspace)
    assert run.returncode == 3, run.describe()
    assert run.error["code"] == "purpose_mismatch"
    assert "prithvi_reg (Regression)" in run.error["message"] and "is for Regression" in run.error["message"]
