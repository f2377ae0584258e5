"""The frozen-model cache of a tune (inference/model_cache.py): written once, served without TerraTorch, exact
against the eager model, and never stale after the checkpoint changes. Each test works on a copy of the session's
tiny tune, so the shared tune folder stays without a cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from conftest import HOLDOUT_IMAGE, engine_env

from geostudio_plugin.engine.inference.model_cache import CACHE_DIR, TuneModel, cache_key, tune_model
from geostudio_plugin.engine.inference.predict import Preprocessing, model_forward, read_deploy_config, stream_file
from geostudio_plugin.engine.inference.streaming import RasterSource, reflect_read


def copy_tune(trained: dict[str, Any], workspace: Path) -> dict[str, Any]:
    tune_dir = workspace / "tunes" / trained["tune_dir"].name
    shutil.copytree(trained["tune_dir"], tune_dir)
    shutil.rmtree(tune_dir / CACHE_DIR, ignore_errors=True)  # another test's inference may have filled it
    record = trained["tune"]
    return {"workspace": workspace, "dir": tune_dir, "record": record, "config": read_deploy_config(tune_dir, record)}


def holdout_batch(prep: Preprocessing, tiles: int) -> torch.Tensor:
    """The first ``tiles`` 224 px tiles of the holdout, preprocessed as the streamed predictor does."""
    source = RasterSource(str(HOLDOUT_IMAGE), prep.bands, prep)
    try:
        pixels, _ = reflect_read(source, 0, 224, 0, 224 * tiles)
    finally:
        source.close()
    return torch.from_numpy(np.stack([pixels[:, :, 224 * i: 224 * (i + 1)] for i in range(tiles)]))


@pytest.fixture(scope="module")
def cached(trained, tmp_path_factory) -> dict[str, Any]:
    """A copy of the tune whose model was traced once on two holdout tiles, as a first CPU inference does."""
    tune = copy_tune(trained, tmp_path_factory.mktemp("cache") / "ws")
    model = tune_model(tune["config"], tune["dir"], tune["record"], "cpu")
    batch = holdout_batch(Preprocessing.from_deploy_config(tune["config"]), tiles=2)
    assert model.optimise(batch) == model.forward
    return {**tune, "model": model, "batch": batch}


def refuse_terratorch() -> Any:
    raise AssertionError("the eager task was built: the cache was not used")


def test_frozen_model_is_cached_once_and_served_without_the_eager_task(cached):
    model, batch, folder = cached["model"], cached["batch"], cached["dir"] / CACHE_DIR
    assert [f.name for f in folder.iterdir()] == [f"frozen-2x224x224-{cache_key(cached['dir'], cached['record'])}.pt"]
    with torch.inference_mode():
        eager = model.eager(batch)
        served = TuneModel(refuse_terratorch, folder, model.key)
        lean, last = served.forward(batch), served.forward(batch[:1])  # a full batch and a short last one
    assert torch.equal(lean.argmax(1), eager.argmax(1))  # the same classes, pixel for pixel
    torch.testing.assert_close(lean, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last, lean[:1], rtol=1e-5, atol=1e-5)
    # a tile of another shape has no frozen model: the eager task is built for it
    with pytest.raises(AssertionError, match="eager task was built"):
        TuneModel(refuse_terratorch, folder, model.key).forward(batch[:, :, :200, :200])


def test_a_changed_checkpoint_is_never_served_the_old_frozen_model(trained, cached, tmp_path):
    tune = copy_tune(trained, tmp_path / "ws")
    shutil.copytree(cached["dir"] / CACHE_DIR, tune["dir"] / CACHE_DIR)
    old = tune_model(tune["config"], tune["dir"], tune["record"], "cpu")
    assert old.key == cached["model"].key and old._cached(cached["batch"]) is not None  # the copy's cache serves
    checkpoint = tune["dir"] / tune["record"]["checkpoint"]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    weights = state.get("state_dict", state)
    head = next(k for k in weights if k.startswith("model.head") and k.endswith("weight"))
    weights[head] = weights[head] * -1  # other weights: other predictions
    torch.save(state, checkpoint)
    renewed = tune_model(tune["config"], tune["dir"], tune["record"], "cpu")
    assert renewed.key != old.key and renewed._cached(cached["batch"]) is None  # a miss: eager, traced anew
    # the new trace's file replaces the old key's (written under a temporary name, renamed into place)
    shape = (2, 224, 224)
    part = renewed.path(shape).with_name(".part")
    part.write_bytes(b"frozen")
    TuneModel._keep(part, renewed.path(shape))
    assert [p.name for p in (tune["dir"] / CACHE_DIR).iterdir()] == [renewed.path(shape).name]


LEAN_PROBE = r"""
import json, sys
out = sys.argv.pop(1)
from geostudio_plugin.engine.__main__ import main
code = main()
heavy = sorted(m for m in ("terratorch", "lightning", "pytorch_lightning", "timm", "segmentation_models_pytorch")
               if m in sys.modules)
open(out, "w").write(json.dumps({"code": code, "heavy": heavy}))
"""


def test_an_inference_with_a_cached_model_imports_no_terratorch_and_agrees_exactly(cached, tmp_path):
    spec = tmp_path / "infer.json"
    spec.write_text(json.dumps({"fine_tuning_id": cached["record"]["tune_id"], "device": "cpu",
                                "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}}))
    report = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", LEAN_PROBE, str(report), "--workspace", str(cached["workspace"]),
                           "infer", str(spec)], capture_output=True, text=True, env=engine_env(), cwd=str(tmp_path),
                          timeout=240)
    seen = json.loads(report.read_text()) if report.exists() else None
    assert seen == {"code": 0, "heavy": []}, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = next(json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line)
    lean = Path(result["outputs"]["predictions"][0])
    prep = Preprocessing.from_deploy_config(cached["config"])
    eager = stream_file(model_forward(cached["model"].load()), cached["record"], prep, str(HOLDOUT_IMAGE), None,
                        "cpu", 16, tmp_path, "eager", confidence=False)
    with rasterio.open(lean) as a, rasterio.open(eager["prediction"]) as b:
        lean_ids, eager_ids = a.read(1), b.read(1)
    assert lean_ids.shape == (512, 512) and (lean_ids == eager_ids).all()  # every pixel, nodata included
