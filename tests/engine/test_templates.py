"""The six built-in templates train through the engine's ``tune`` command on the CPU (random init, offline).

Data: the bundled real Sen1Floods11 chips. One-epoch runs use one scene (Spain_7370579, 128 px chips: 16
samples) so each costs little more than the engine's start-up; the quality runs use all six scenes.
The Prithvi Regression template is trained in ``test_regression_ndwi.py`` (a derived real target).

Test-only backbone ``test_convnext_large_depth1`` (ConvNeXt-Large, one block per stage) is taken by the engine
only with GEOSTUDIO_ALLOW_TEST_BACKBONES=1, set here; the catalog never lists it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from conftest import (EXIT_INPUT, EXIT_INVALID_SPEC, REPO, SAMPLES, TRAIN_DIR, onboarding_payload, run_engine, run_ok)

import sys

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import flood_payload  # noqa: E402

SPAIN = "Spain_7370579"


@pytest.fixture(scope="module", autouse=True)
def allow_test_backbones():
    old = os.environ.get("GEOSTUDIO_ALLOW_TEST_BACKBONES")
    os.environ["GEOSTUDIO_ALLOW_TEST_BACKBONES"] = "1"
    yield
    if old is None:
        os.environ.pop("GEOSTUDIO_ALLOW_TEST_BACKBONES", None)
    else:
        os.environ["GEOSTUDIO_ALLOW_TEST_BACKBONES"] = old


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Any]:
    """One workspace: Spain S1 (one modality), Spain S2+S1 (multi-modal), all six scenes S1 (quality runs)."""
    root = tmp_path_factory.mktemp("templates")
    workspace = root / "workspace"
    spain = root / "spain"
    spain.mkdir()
    for path in (TRAIN_DIR / f"{SPAIN}_S1Hand.tif", TRAIN_DIR / f"{SPAIN}_LabelHand.tif",
                 SAMPLES / "S2Hand" / f"{SPAIN}_S2Hand.tif"):
        shutil.copyfile(path, spain / path.name)
    out: dict[str, Any] = {"workspace": workspace}
    one = run_ok("onboard", onboarding_payload(spain, name="spain s1", chip_size=128), workspace)
    out["s1"] = one.result["summary"]["dataset_id"]
    payload = flood_payload(spain)
    payload["onboarding_options"]["chip_size"] = 128
    multi = run_ok("onboard", payload, workspace)
    out["s1s2"] = multi.result["summary"]["dataset_id"]
    full = run_ok("onboard", onboarding_payload(chip_size=128, name="six scenes"), workspace)
    out["full"] = full.result["summary"]["dataset_id"]
    out["full_dir"] = Path(full.result["outputs"]["dataset_dir"])
    return out


def tune_spec(dataset_id: str, template: str, backbone: str, **params: Any) -> dict[str, Any]:
    model_parameters = {"runner": {"max_epochs": 1, "early_stopping_patience": 0},
                        "data": {"batch_size": 4},
                        "model": {"decode_head": {"channels": 32, "decoder": "UNetDecoder"}}}
    for group, values in params.items():
        model_parameters.setdefault(group, {}).update(values)
    return {"name": f"t-{template}"[:30].replace("_", "-"), "dataset_id": dataset_id, "base_model_id": backbone,
            "tune_template_id": template, "model_parameters": model_parameters, "device": "cpu"}


def tune_ok(spec: dict[str, Any], workspace: Path) -> dict[str, Any]:
    run = run_engine("tune", spec, workspace, timeout=900)
    assert run.returncode == 0, run.describe()
    tune_dir = Path(run.result["outputs"]["tune_dir"])
    record = json.loads((tune_dir / "tune.json").read_text())
    return {"run": run, "dir": tune_dir, "record": record, "config": (tune_dir / "config.yaml").read_text()}


def val_metric(run, name: str) -> list[float]:
    return [m["value"] for m in run.of("metric") if m["name"] == name]


@pytest.fixture(scope="module")
def multimodal(datasets) -> dict[str, Any]:
    """TerraMind-tiny on Spain S2+S1, one epoch: trained once for the template check and the multi-modal record,
    card and inference test. One tile of 512 px: the 512 px scene is predicted in one forward pass, which the
    inference test repeats by hand."""
    whole = {"h_crop": 512, "w_crop": 512, "h_stride": 512, "w_stride": 512}
    spec = tune_spec(datasets["s1s2"], "terramind_seg", "terramind_v1_tiny",
                     model={"decode_head": {"channels": 32, "decoder": "UNetDecoder"},
                            "tiled_inference_parameters": whole})
    return tune_ok(spec, datasets["workspace"])


# -------------------------------------------------------------------------- one short epoch per template


@pytest.mark.parametrize("template, backbone, dataset, expect", [
    ("terramind_seg", "terramind_v1_tiny", "s1", ["GenericNonGeoSegmentationDataModule",
                                                   "backbone_modalities: [\"S1GRD\"]", "remove_cls_token: false"]),
    ("terramind_seg", "terramind_v1_tiny", "s1s2", ["GenericMultiModalDataModule", "backbone_merge_method: mean",
                                                     "S2L1C:", "S1GRD:"]),
    ("clay_v1_seg", "clay_v1_base", "s1", ["backbone_img_size: 128", "backbone_bands: [\"VV\", \"VH\"]"]),
    ("timm_convnext_seg", "test_convnext_large_depth1", "s1", ["backbone_depths: [1, 1, 1, 1]"]),
], ids=["terramind-S1", "terramind-S2+S1", "clay", "convnext"])
def test_template_trains_one_epoch(datasets, template, backbone, dataset, expect, request):
    if dataset == "s1s2":  # the module's multi-modal tune (trained once, also used below)
        tuned = request.getfixturevalue("multimodal")
    else:
        tuned = tune_ok(tune_spec(datasets[dataset], template, backbone), datasets["workspace"])
    record, config = tuned["record"], tuned["config"]
    assert record["tune_template_id"] == template and record["epochs_run"] == 1
    assert record["best_val_loss"] is not None and np.isfinite(record["best_val_loss"])
    assert (tuned["dir"] / record["checkpoint"]).is_file()
    for text in expect:
        assert text in config, (text, config)
    assert val_metric(tuned["run"], "val/mIoU"), "no validation mIoU reported"


# ------------------------------------------------------------------- a multi-modal model: record, card, inference


def test_multimodal_record_card_and_inference(datasets, multimodal, tmp_path):
    """The record and the card describe S2L1C and S1GRD; infer on the scene's S1 + S2 rasters equals one forward
    pass of the model on the dict input preprocessed here by hand; the S1 raster alone names S2 and its suffix."""
    record, tune_dir, workspace = multimodal["record"], multimodal["dir"], datasets["workspace"]
    dataset = json.loads((workspace / "datasets" / record["dataset_id"] / "dataset.json").read_text())
    payload = flood_payload(".")["data_sources"]
    spec = record["model_input_data_spec"]
    assert [m["modality_tag"] for m in spec] == ["S2L1C", "S1GRD"]
    for entry, source in zip(spec, payload):
        params = dataset["training_params"][entry["modality_tag"]]
        assert (entry["connector"], entry["collection"], entry["file_suffix"]) == (
            source["connector"], source["collection"], source["file_suffix"])
        assert [b["band_name"] for b in entry["bands"]] == [b["band_name"] for b in source["bands"]]
        assert [b["index"] for b in entry["bands"]] == list(range(len(source["bands"])))
        assert entry["norm_means"] == params["norm_means"] and entry["norm_stds"] == params["norm_stds"]
        assert (entry["constant_scale"], entry["no_data_replace"]) == (1.0, 0.0)
        assert all(b["scaling_factor"] == 1.0 for b in entry["bands"])
    assert [(b["band_name"], b["RGB_band"]) for b in spec[0]["bands"] if b["RGB_band"]] == [
        ("Blue", "B"), ("Green", "G"), ("Red", "R")]
    assert spec[1]["band_count"] == 2 and spec[1]["nodata"] is None and spec[0]["nodata"] == 0.0
    assert record["data_spec"]["modality_tag"] == "S2L1C" and record["data_spec"]["band_names"][1] == "Blue"
    card = json.loads((tune_dir / "model_card.json").read_text())
    assert [(m["modality_tag"], [b["name"] for b in m["bands"]]) for m in card["modalities"]] == [
        (m["modality_tag"], [b["band_name"] for b in m["bands"]]) for m in spec]
    text = (tune_dir / "MODEL_CARD.md").read_text()
    assert "Modality `S2L1C` (sentinelhub / s2_l1c), files `_S2Hand.tif`" in text
    assert "Modality `S1GRD` (sentinelhub / s1_grd), files `_S1Hand.tif`" in text and "| VV (Gray) |" in text

    s1, s2 = TRAIN_DIR / f"{SPAIN}_S1Hand.tif", SAMPLES / "S2Hand" / f"{SPAIN}_S2Hand.tif"
    run = run_ok("infer", {"fine_tuning_id": record["tune_id"], "device": "cpu",
                           "spatial_domain": {"urls": [str(s1), str(s2)]}}, workspace)  # S1 first: matched by suffix
    [output] = run.result["summary"]["outputs"]
    assert output["inputs"] == {"S2L1C": str(s2), "S1GRD": str(s1)}
    with rasterio.open(output["prediction"]) as pred, rasterio.open(s1) as src:
        assert (pred.crs, pred.transform, pred.shape) == (src.crs, src.transform, src.shape)
        predicted = pred.read(1)
    assert set(np.unique(predicted)) <= {0, 1}

    import torch
    import yaml

    from geostudio_plugin.engine.inference.predict import load_task

    config = yaml.safe_load((tune_dir / "config_deploy.yaml").read_text())
    data = config["data"]["init_args"]
    inputs = {}
    for tag, path in (("S2L1C", s2), ("S1GRD", s1)):
        with rasterio.open(path) as src:  # as GenericMultimodalDataset reads it: nodata masked, then replaced
            pixels = src.read(masked=True).astype("float32").filled(data["no_data_replace"])
        pixels = (pixels * data["constant_scale"][tag] - np.float32(data["means"][tag])[:, None, None]) \
            / np.float32(data["stds"][tag])[:, None, None]
        inputs[tag] = torch.from_numpy(pixels[None])
    task = load_task(config, tune_dir, record, "cpu")
    with torch.no_grad():
        direct = task.model(inputs).output.argmax(dim=1)[0].numpy()
    ids = np.array([c["id"] for c in record["classes"]])
    assert np.array_equal(predicted, ids[direct])

    run = run_engine("infer", {"fine_tuning_id": record["tune_id"], "device": "cpu",
                               "spatial_domain": {"urls": [str(s1)]}}, workspace)
    assert run.returncode == EXIT_INPUT and run.error["code"] == "modality_inputs", run.describe()
    assert "no raster for S2L1C (a file ending _S2Hand.tif)" in run.error["message"], run.error
    assert str(s1) in run.error["message"]


# ------------------------------------------------------------------- quality: above the majority baseline


def majority_baseline_miou(dataset_dir: Path) -> float:
    """mIoU of predicting the commonest class everywhere on the validation split (labelled pixels only)."""
    record = json.loads((dataset_dir / "dataset.json").read_text())
    counts = np.zeros(len(record["classes"]), dtype=np.int64)
    for stem in record["splits"]["val"]:
        with rasterio.open(dataset_dir / "labels" / f"{stem}{record['label_suffix']}") as src:
            label = src.read(1)
        counts += np.bincount(label[label >= 0].ravel(), minlength=len(counts))[: len(counts)]
    return float(counts.max() / counts.sum() / len(counts))  # IoU of the majority class, 0 for the others


@pytest.mark.parametrize("template, backbone, epochs, lr, loss", [
    ("timm_resnet_seg", "timm_resnet18", 3, 1e-3, "CrossEntropyLoss"),
], ids=["resnet18"])
def test_segmentation_beats_majority_baseline(datasets, template, backbone, epochs, lr, loss):
    """Validation mIoU on the six real scenes (128 px chips, S1 VV/VH) rises above predicting the majority class.

    Afforded here (about 1.5 min on 2 cores): ResNet-18, 3 epochs, random init. TerraMind-tiny (3 epochs, lr 1e-4)
    also rose above the baseline when it ran here (2026-11-29), but its 2 minutes are left out of `make test`, which
    must stay under 30 minutes with the QGIS matrix; add ("terramind_seg", "terramind_v1_tiny", 3, 1e-4,
    "CrossEntropyLoss") back to the parameters to run it.
    Families that need more epochs than a test can afford: Prithvi-EO-2.0-tiny from random init stayed exactly at
    the majority baseline for 3 epochs (cross-entropy and Dice, lr 1e-3; measured); the shrunk ConvNeXt, Clay v1
    base (95 M parameters, depth fixed at 12) and the 100M-600M Prithvi, TerraMind base/large and
    ConvNeXt-Large/XLarge need far more CPU time (a GPU, or pretrained weights). Those train one epoch above and
    are built in test_backbones.py.
    """
    spec = tune_spec(datasets["full"], template, backbone, runner={"max_epochs": epochs},
                     optimizer={"lr": lr, "type": "AdamW"}, data={"batch_size": 8},
                     model={"decode_head": {"channels": 32, "decoder": "UNetDecoder", "loss_decode": {"type": loss}}})
    tuned = tune_ok(spec, datasets["workspace"])
    miou = val_metric(tuned["run"], "val/mIoU")
    baseline = majority_baseline_miou(datasets["full_dir"])
    assert len(miou) == epochs
    assert max(miou) > baseline + 0.05, (miou, baseline)


# ------------------------------------------------------------------------------------ refusals


def test_incompatible_pair_lists_backbones_that_fit(datasets):
    run = run_engine("tune", tune_spec(datasets["s1"], "clay_v1_seg", "timm_resnet18"), datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "incompatible_backbone"
    assert "timm_resnet18" in run.error["message"] and "clay_v1_base" in run.error["message"]


def test_multimodal_dataset_on_a_one_modality_template_names_terramind(datasets):
    run = run_engine("tune", tune_spec(datasets["s1s2"], "prithvi_seg", "Prithvi_EO_V2_tiny_TL"), datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "multimodal_not_supported"
    assert "S2L1C, S1GRD" in run.error["message"] and "terramind_seg" in run.error["message"]


def test_regression_template_on_segmentation_dataset(datasets):
    run = run_engine("tune", tune_spec(datasets["s1"], "prithvi_reg", "Prithvi_EO_V2_tiny_TL"), datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "purpose_mismatch"
    message = run.error["message"]
    assert "Regression" in message and "Segmentation" in message
    assert "prithvi_seg" in message and "timm_resnet_seg" in message and "prithvi_reg (" not in message


def test_clay_image_size_must_be_the_chip_size(datasets):
    spec = tune_spec(datasets["s1"], "clay_v1_seg", "clay_v1_base", model={"backbone_img_size": 224})
    run = run_engine("tune", spec, datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "image_size_mismatch"
    assert "backbone_img_size = 224" in run.error["message"] and "128" in run.error["hint"]


@pytest.mark.parametrize("params, code, named", [
    ({"model": {"no_such_knob": 1}}, "unknown_parameter", ["model.no_such_knob", "decode_head"]),
    ({"runner": {"max_epochs": "many"}}, "invalid_parameter", ["runner.max_epochs", "integer"]),
    ({"data": {"batch_size": 0}}, "invalid_parameter", ["data.batch_size", "1 to 1024"]),
    ({"model": {"backbone_img_size": 8}}, "invalid_parameter", ["model.backbone_img_size", "32 to 4096"]),
    ({"model": {"decode_head": {"loss_decode": {"type": "MSELoss"}}}}, "invalid_parameter",
     ["loss_decode.type", "CrossEntropyLoss"]),
], ids=["unknown", "wrong-type", "out-of-range", "clay-size-range", "wrong-loss"])
def test_bad_parameters_name_parameter_and_allowed_values(datasets, params, code, named):
    spec = tune_spec(datasets["s1"], "clay_v1_seg", "clay_v1_base", **params)
    run = run_engine("tune", spec, datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    error = run.error
    text = json.dumps(error)
    assert error["code"] == code or code in text, error
    for word in named:
        assert word in text, (word, error)


def test_modality_and_bands_a_backbone_cannot_take(datasets, tmp_path):
    """TerraMind on a modality it does not know; Clay on bands without a known wavelength: both name what fits."""
    spain = tmp_path / "spain"
    spain.mkdir()
    for suffix in ("_S1Hand.tif", "_LabelHand.tif"):
        shutil.copyfile(TRAIN_DIR / f"{SPAIN}{suffix}", spain / f"{SPAIN}{suffix}")
    payload = onboarding_payload(spain, name="radar as SAR", chip_size=256)
    payload["data_sources"][0]["modality_tag"] = "SAR"
    for band, name in zip(payload["data_sources"][0]["bands"], ("HH", "HV")):
        band["band_name"] = name
    dataset_id = run_ok("onboard", payload, datasets["workspace"]).result["summary"]["dataset_id"]

    run = run_engine("tune", tune_spec(dataset_id, "terramind_seg", "terramind_v1_tiny"), datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "modality_not_supported"
    assert "SAR" in run.error["message"]
    for tag in ("RGB", "S2L2A", "S2L1C", "S1GRD", "S1RTC", "DEM"):
        assert tag in run.error["message"]
    assert "prithvi_seg" in run.error["hint"]

    run = run_engine("tune", tune_spec(dataset_id, "clay_v1_seg", "clay_v1_base"), datasets["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "bands_not_supported"
    assert "HH, HV" in run.error["message"] and "VV" in run.error["message"] and "BLUE" in run.error["message"]
