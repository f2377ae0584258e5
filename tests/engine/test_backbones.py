"""Every listed backbone builds offline with random weights and its template's neck, and runs a real chip.

The model arguments are the ones the engine renders: each backbone's template is rendered (``build_context`` +
``render``) against a dataset onboarded from the bundled Sen1Floods11 chips (Sentinel-1 VV/VH, 64 px), and
``model.init_args.model_args`` of that config is built with TerraTorch's EncoderDecoderFactory. Then one
forward pass on a real 2-band chip of the dataset.

Shrunk where a full build costs too much CPU time or memory for a test: the Prithvi 100M/300M/600M ViTs are
built with ``backbone_depth: 4`` and neck indices [0, 1, 2, 3] (their real indices are checked against their
depth below). TerraMind tiny-large, Clay v1 base (TerraTorch fixes its depth at 12), the ResNets and both
ConvNeXts are built whole.
"""

from __future__ import annotations

import copy
import gc
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from conftest import TRAIN_DIR, onboarding_payload, run_ok

from geostudio_plugin.engine import catalog
from geostudio_plugin.engine.tuning.render import build_context, merge_parameters, render

SHRUNK_DEPTH = 4
CHIP = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    folder = root / "one"
    folder.mkdir()
    for suffix in ("_S1Hand.tif", "_LabelHand.tif"):
        (folder / f"Spain_7370579{suffix}").write_bytes((TRAIN_DIR / f"Spain_7370579{suffix}").read_bytes())
    run = run_ok("onboard", onboarding_payload(folder, name="backbone chips", chip_size=CHIP), root / "workspace")
    dataset_dir = Path(run.result["outputs"]["dataset_dir"])
    record = json.loads((dataset_dir / "dataset.json").read_text())
    stem = record["splits"]["train"][0]
    with rasterio.open(dataset_dir / "training_data" / "S1GRD" / f"{stem}_S1Hand.tif") as src:
        chip = np.nan_to_num(src.read().astype(np.float32))
    return {"record": record, "dir": dataset_dir, "chip": chip, "run_dir": root / "run"}


@pytest.fixture(scope="module")
def factory():
    from terratorch.models import EncoderDecoderFactory

    return EncoderDecoderFactory()


def model_args(backbone: dict, template: dict, dataset: dict) -> tuple[dict, str]:
    record = copy.deepcopy(dataset["record"])
    record["purpose"] = template["purpose"]  # the regression template renders from the same chips
    params = merge_parameters(template["model_params"], {"model": {"decode_head": {"channels": 16}}})
    context = build_context(tune_id="t", params=params, dataset=record, dataset_dir=dataset["dir"], backbone=backbone,
                            run_dir=dataset["run_dir"], trainer={"accelerator": "cpu", "devices": 1, "precision": "32"},
                            seed=0)
    config = yaml.safe_load(render(template, context))
    init = config["model"]["init_args"]
    assert init["model_factory"] == "EncoderDecoderFactory"
    task = "regression" if config["model"]["class_path"].endswith("PixelwiseRegressionTask") else "segmentation"
    return dict(init["model_args"]), task


CASES = [(b["name"], t) for b in catalog.backbones() for t in b["templates"]]


@pytest.mark.parametrize("name, template_id", CASES, ids=[f"{n}-{t}" for n, t in CASES])
def test_backbone_builds_and_runs_a_chip(dataset, factory, name, template_id):
    import torch

    backbone = catalog.find_backbone(name)
    template = catalog.find_template(template_id)
    args, task = model_args(backbone, template, dataset)
    assert args["backbone"] == backbone["model_params"]["backbone"] and args["backbone_pretrained"] is False
    if backbone["model_params"]["model_category"] == "prithvi" and backbone["params_m"] > 50:
        args["backbone_depth"] = SHRUNK_DEPTH
        args["necks"][0]["indices"] = list(range(SHRUNK_DEPTH))
    model = factory.build_model(task, **args)
    model.eval()
    chip = torch.from_numpy(dataset["chip"]).unsqueeze(0)
    assert chip.shape == (1, 2, CHIP, CHIP)
    with torch.no_grad():
        out = model(chip).output
    if task == "segmentation":
        assert tuple(out.shape) == (1, len(dataset["record"]["classes"]), CHIP, CHIP)
    else:
        assert tuple(out.shape[-2:]) == (CHIP, CHIP) and out.shape[0] == 1
    assert torch.isfinite(out).all()
    del model, out
    gc.collect()


def test_catalog_facts_agree_with_terratorch():
    """Registry names exist; each backbone lists exactly the templates of its category; neck indices fit."""
    import timm
    from terratorch.registry import BACKBONE_REGISTRY

    names = [b["name"] for b in catalog.backbones()]
    assert len(names) == 18 and len(set(names)) == 18
    by_name = {b["name"]: b for b in catalog.backbones()}
    assert by_name["Prithvi_EO_V2_600M_TL"]["model_params"]["backbone"] == "prithvi_eo_v2_600_tl"
    assert by_name["Prithvi_EO_V2_600M"]["model_params"]["patch_size"] == 14
    assert by_name["clay_v1_base"]["model_params"]["patch_size"] == 8
    for backbone in catalog.backbones() + catalog.test_backbones():
        mp = backbone["model_params"]
        timm_name = mp["backbone"].removeprefix("timm_")  # prefix routing: timm_<name> goes to timm
        assert mp["backbone"] in BACKBONE_REGISTRY or timm.is_model(timm_name), mp["backbone"]
        fits = sorted(t["id"] for t in catalog.templates() if catalog.compatible(t, backbone))
        assert sorted(backbone["templates"]) == fits, backbone["name"]
        if "num_layers" in mp and mp["model_category"] in ("prithvi", "terramind", "clay"):
            assert len(mp["neck_indices"]) == 4 and max(mp["neck_indices"]) < mp["num_layers"], backbone["name"]
        for key in ("name", "description", "params_m", "weights"):
            assert key in backbone
    assert not set(b["name"] for b in catalog.test_backbones()) & set(names)
    assert all(t["extra_info"]["model_category"] in {b["model_params"]["model_category"] for b in catalog.backbones()}
               for t in catalog.templates())
    assert sorted(t["id"] for t in catalog.templates()) == ["clay_v1_seg", "prithvi_reg", "prithvi_seg",
                                                           "terramind_seg", "timm_convnext_seg", "timm_resnet_seg"]
