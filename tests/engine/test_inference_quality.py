"""Inference is right, not only well-formed: it equals a direct forward pass of the checkpoint, it beats the
majority baseline on the held-back chip, and it writes the user's label ids (here 3 and 7), not class indices.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from conftest import (EXIT_OK, HOLDOUT_IMAGE, TRAIN_DIR, TRAIN_STEMS, onboarding_payload, run_engine, run_ok,
                      tune_payload)

HOLDOUT_LABEL = HOLDOUT_IMAGE.with_name(HOLDOUT_IMAGE.name.replace("_S1Hand", "_LabelHand"))
PRED_NODATA = 255  # uint8 label ids, 255 where the input is no data
TILE = 224  # the template's tile: a chip of this size is predicted in one forward call, no tiling or blending


def crop_of_holdout(target: Path, row: int = 150, col: int = 200, size: int = TILE) -> Path:
    with rasterio.open(HOLDOUT_IMAGE) as src:
        window = Window(col, row, size, size)
        data, profile = src.read(window=window), src.profile.copy()
        profile.update(width=size, height=size, transform=src.window_transform(window))
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


def direct_forward_pass(tune_dir: Path, dataset: dict[str, Any], image: Path) -> tuple[np.ndarray, np.ndarray]:
    """(class index per pixel, valid mask): the checkpoint's own model on the image, normalised with the
    dataset's statistics as TerraTorch's datamodule does in training (nodata -> 0, then (x - mean) / std)."""
    import torch
    import yaml

    record = json.loads((tune_dir / "tune.json").read_text())
    config = yaml.safe_load((tune_dir / "config_deploy.yaml").read_text())
    module, _, name = config["model"]["class_path"].rpartition(".")
    task = getattr(importlib.import_module(module), name)(**config["model"]["init_args"])
    state = torch.load(tune_dir / record["checkpoint"], map_location="cpu", weights_only=False)
    task.load_state_dict(state.get("state_dict", state), strict=True)
    task.eval()
    stats = dataset["training_params"][dataset["modalities"][0]]
    with rasterio.open(image) as src:
        data = src.read([b + 1 for b in stats["bands"]]).astype("float32")
        nodata = src.nodata
    valid = np.isfinite(data).all(axis=0)
    if nodata is not None and not np.isnan(nodata):
        valid &= (data != nodata).all(axis=0)
    data = np.where(valid[None], data, 0.0).astype("float32")
    data = data * float(record["model_parameters"]["data"]["constant_multiply"])
    data = (data - np.float32(stats["norm_means"])[:, None, None]) / np.float32(stats["norm_stds"])[:, None, None]
    with torch.no_grad():
        logits = task.model(torch.from_numpy(data[None].astype("float32"))).output
    return logits.argmax(dim=1)[0].numpy(), valid


def predict(workspace: Path, tune_id: str, image: Path) -> tuple[np.ndarray, dict[str, Any]]:
    run = run_ok("infer", {"fine_tuning_id": tune_id, "device": "cpu", "spatial_domain": {"urls": [str(image)]}},
                 workspace)
    (path,) = run.result["outputs"]["predictions"]
    with rasterio.open(path) as out:
        assert out.nodata == PRED_NODATA
        return out.read(1), run.result["summary"]["outputs"][0]


def iou(prediction: np.ndarray, truth: np.ndarray, k: int, mask: np.ndarray) -> float:
    inter = ((prediction == k) & (truth == k) & mask).sum()
    union = (((prediction == k) | (truth == k)) & mask).sum()
    return float(inter / union) if union else float("nan")


def test_prediction_equals_a_direct_forward_pass_of_the_checkpoint(trained, tmp_path):
    chip = crop_of_holdout(tmp_path / "holdout_crop.tif")
    values, _ = predict(trained["workspace"], trained["tune"]["tune_id"], chip)
    index, valid = direct_forward_pass(trained["tune_dir"], trained["dataset"], chip)
    ids = np.array([c["id"] for c in trained["tune"]["classes"]])
    assert len(np.unique(index[valid])) == 2, "the direct pass should see water and land in this crop"
    np.testing.assert_array_equal(values[valid], ids[index[valid]])
    assert (values[~valid] == PRED_NODATA).all()


def test_prediction_beats_the_majority_baseline_on_the_held_back_chip(trained):
    """The session's one-epoch model reaches a mean IoU near 0.87 on the holdout; always answering the
    majority class (not water) gets 0.42 (IoU 0.83 for land, 0 for water)."""
    values, _ = predict(trained["workspace"], trained["tune"]["tune_id"], HOLDOUT_IMAGE)
    with rasterio.open(HOLDOUT_LABEL) as src:
        truth = src.read(1)
    mask = (truth >= 0) & (values != PRED_NODATA)
    assert mask.mean() > 0.9
    majority = np.full_like(truth, np.bincount(truth[mask]).argmax())
    model_iou = [iou(values, truth, k, mask) for k in (0, 1)]
    baseline_iou = [iou(majority, truth, k, mask) for k in (0, 1)]
    assert np.mean(model_iou) > np.mean(baseline_iou) + 0.2, (model_iou, baseline_iou)
    assert model_iou[1] > 0.5, f"water IoU {model_iou[1]:.2f}"


# ------------------------------------------------------------------------- label ids that are not 0..N-1

LAND, WATER, IGNORE = 3, 7, 255


@pytest.fixture(scope="module")
def ids_3_and_7(tmp_path_factory) -> dict[str, Any]:
    """Three training scenes whose labels say 3 (land), 7 (water) and 255 (no data), onboarded in 128 px chips
    and fine-tuned for one short epoch."""
    root = tmp_path_factory.mktemp("ids37")
    source = root / "source"
    source.mkdir()
    for stem in TRAIN_STEMS[:3]:
        shutil.copyfile(TRAIN_DIR / f"{stem}_S1Hand.tif", source / f"{stem}_S1Hand.tif")
        with rasterio.open(TRAIN_DIR / f"{stem}_LabelHand.tif") as src:
            labels, profile = src.read(1), src.profile.copy()
        profile.update(dtype="uint8", nodata=None)
        recoded = np.select([labels == 0, labels == 1], [LAND, WATER], IGNORE).astype("uint8")
        with rasterio.open(source / f"{stem}_LabelHand.tif", "w", **profile) as dst:
            dst.write(recoded, 1)
    payload = onboarding_payload(source, name="ids three and seven", chip_size=128, ignore_id=IGNORE)
    payload["label_categories"] = [{"id": str(WATER), "name": "Water", "color": "#1f78b4", "opacity": 1},
                                   {"id": str(IGNORE), "name": "No data", "color": "#000000", "opacity": 0},
                                   {"id": str(LAND), "name": "Land", "color": "#d9d9d9", "opacity": 1}]
    workspace = root / "ws"
    onboard = run_ok("onboard", payload, workspace)
    dataset_dir = Path(onboard.result["outputs"]["dataset_dir"])
    tune = run_engine("tune", tune_payload(onboard.result["summary"]["dataset_id"], name="ids-3-7"), workspace,
                      timeout=600)
    assert tune.returncode == EXIT_OK, tune.describe()
    tune_dir = Path(tune.result["outputs"]["tune_dir"])
    return {"workspace": workspace, "dataset": json.loads((dataset_dir / "dataset.json").read_text()),
            "tune_dir": tune_dir, "tune": json.loads((tune_dir / "tune.json").read_text()), "root": root}


def test_user_ids_travel_from_dataset_to_tune(ids_3_and_7):
    dataset, tune = ids_3_and_7["dataset"], ids_3_and_7["tune"]
    assert dataset["label_map"] == {str(LAND): 0, str(WATER): 1, str(IGNORE): -1}
    assert [(c["index"], c["id"], c["name"]) for c in tune["classes"]] == [(0, LAND, "Land"), (1, WATER, "Water")]
    styles = tune["geoserver_push"][0]["geoserver_style"]["segmentation"]
    assert [s["quantity"] for s in styles] == [str(LAND), str(WATER)]


def test_inference_writes_the_user_ids_back(ids_3_and_7, tmp_path):
    chip = crop_of_holdout(tmp_path / "holdout_crop.tif")
    values, summary = predict(ids_3_and_7["workspace"], ids_3_and_7["tune"]["tune_id"], chip)
    index, valid = direct_forward_pass(ids_3_and_7["tune_dir"], ids_3_and_7["dataset"], chip)
    expected = np.array([LAND, WATER])[index]
    np.testing.assert_array_equal(values[valid], expected[valid])  # exactly the user's ids, pixel by pixel
    assert set(np.unique(values).tolist()) <= {LAND, WATER, PRED_NODATA}
    assert set(np.unique(values[valid]).tolist()) == set(np.unique(expected[valid]).tolist())
    assert summary["class_pixels"] == {str(LAND): int((values == LAND).sum()), str(WATER): int((values == WATER).sum())}
