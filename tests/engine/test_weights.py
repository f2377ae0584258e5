"""Pre-trained weights (issue 12), without the internet: a checkpoint the test writes, and the download path
against a loopback HTTP server laid out like the Hugging Face hub (reached through HF_ENDPOINT), including a
connection cut mid-file (resumed) and a download cancelled half way (discarded, then done again).

The weights are random (a backbone built with random initialisation, saved), so nothing here is downloaded from
anywhere: what is tested is the plumbing — where the file is looked for, how it is handed to TerraTorch and timm,
that it is really loaded (a tensor compared), and that a partial download is never used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, engine_command, engine_env, parse_stdout

sys.path.insert(0, str(REPO / "tests" / "support"))
from fake_hub import serve, stop  # noqa: E402 - after the path


def _safetensors_of_random_resnet18(folder: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("resnet18", pretrained=False)
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture()
def hub(tmp_path):
    weights = _safetensors_of_random_resnet18(tmp_path)
    server = serve({"timm/resnet18.a1_in1k/model.safetensors": weights.read_bytes()})
    yield server, weights
    stop(server)


def _env(hub_url: str, hf_home: Path, offline: bool) -> dict[str, str]:
    return {**engine_env(), "HF_ENDPOINT": hub_url, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}


def _weights_job(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    spec = tmp_path / "weights.json"
    spec.write_text(json.dumps({"backbone": "timm_resnet18"}))
    return subprocess.Popen(engine_command(tmp_path / "workspace", "weights", str(spec)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, start_new_session=True)


def _blobs(hf_home: Path) -> list[Path]:
    return sorted((hf_home / "hub").rglob("blobs/*")) if (hf_home / "hub").is_dir() else []


def test_a_download_cut_mid_file_resumes_and_lands_whole_in_the_cache(hub, tmp_path):
    server, weights = hub
    server.cut_first_get = True
    hf_home = tmp_path / "hf"
    job = _weights_job(tmp_path, _env(server.url, hf_home, offline=False))
    out, err = job.communicate(timeout=300)
    events, bad_lines = parse_stdout(out)
    assert not bad_lines, bad_lines[:5]
    assert job.returncode == 0, err[-3000:]
    result = next(e for e in events if e["event"] == "result")
    cached = Path(result["outputs"]["path"])
    assert cached.read_bytes() == weights.read_bytes()
    assert result["summary"] == {**result["summary"], "repo_id": "timm/resnet18.a1_in1k",
                                 "filename": "model.safetensors", "bytes": weights.stat().st_size}
    gets = [r for r in server.requests if r[0] == "GET"]
    assert len(gets) >= 2 and gets[0][2] is None and (gets[-1][2] or "").startswith("bytes="), gets  # resumed
    download = [e for e in events if e["event"] == "progress" and e.get("stage") == "download" and "bytes" in e]
    assert download and download[-1]["bytes"] == download[-1]["total"] == weights.stat().st_size
    assert not [b for b in _blobs(hf_home) if b.name.endswith(".incomplete")]

    # downloaded once, found offline by TerraTorch's own timm path: the backbone starts from exactly these weights
    probe = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
from safetensors.torch import load_file
from geostudio_plugin.engine.tuning.weights import resolve
from terratorch.registry import BACKBONE_REGISTRY
weights = resolve("timm_resnet18", "pretrained")
assert weights.origin == "hub_cache" and weights.pretrained, weights
model = BACKBONE_REGISTRY.build("timm_resnet18", pretrained=True)
saved = load_file({str(weights)!r})
print(torch.equal(model.state_dict()["conv1.weight"], saved["conv1.weight"]))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env=_env("http://127.0.0.1:9", hf_home, offline=True))  # a dead endpoint: offline
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "True", done.stderr[-3000:]


def test_a_cancelled_download_leaves_nothing_usable_and_a_later_one_completes(hub, tmp_path):
    """huggingface_hub 2.4 downloads into a file of its own per attempt and removes it when the attempt ends
    early, so a cancelled download never leaves a partial file in the cache (nor one that could be used); a
    cut *within* a download resumes (the test above), a cancelled one starts over."""
    server, weights = hub
    server.delay_s = 0.05  # 64 KB per 50 ms: the download takes long enough to be cancelled in the middle
    hf_home = tmp_path / "hf"
    job = _weights_job(tmp_path, _env(server.url, hf_home, offline=False))
    assert job.stdout is not None
    for line in job.stdout:  # wait until bytes arrive, then cancel as the task manager's Cancel does
        event = json.loads(line)
        if event.get("stage") == "download" and event.get("bytes", 0) > 0:
            break
    os.killpg(job.pid, signal.SIGTERM)
    job.wait(timeout=30)
    assert job.returncode == 130
    assert _blobs(hf_home) == [], [str(p.relative_to(hf_home)) for p in hf_home.rglob("*")]
    missing = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r});"
         "from geostudio_plugin.engine.tuning.weights import resolve; resolve('timm_resnet18', 'pretrained')"],
        capture_output=True, text=True, timeout=120, env=_env(server.url, hf_home, offline=True))
    assert missing.returncode != 0 and "not in the cache" in missing.stderr, missing.stderr[-2000:]
    assert "resnet18.a1_in1k" in missing.stderr and "model.safetensors" in missing.stderr

    server.delay_s = 0.0
    job = _weights_job(tmp_path, _env(server.url, hf_home, offline=False))
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-3000:]
    result = next(e for e in parse_stdout(out)[0] if e["event"] == "result")
    assert Path(result["outputs"]["path"]).read_bytes() == weights.read_bytes()


def test_a_local_checkpoint_is_what_the_backbone_starts_from(tmp_path):
    """A Prithvi state dict the test writes, given as train_options.weights: TerraTorch loads it (tensor equal)."""
    probe = f"""
import sys, torch
sys.path.insert(0, {str(REPO)!r})
from geostudio_plugin.engine.tuning.weights import resolve
from terratorch.registry import BACKBONE_REGISTRY
saved = BACKBONE_REGISTRY.build("prithvi_eo_v2_tiny_tl", pretrained=False).state_dict()
torch.save(saved, {str(tmp_path / "prithvi.pt")!r})
weights = resolve("prithvi_eo_v2_tiny_tl", {str(tmp_path / "prithvi.pt")!r})
assert weights.origin == "file" and weights.pretrained and weights.kwargs == {{"ckpt_path": weights.path}}, weights
model = BACKBONE_REGISTRY.build("prithvi_eo_v2_tiny_tl", pretrained=weights.pretrained, **weights.kwargs)
fresh = BACKBONE_REGISTRY.build("prithvi_eo_v2_tiny_tl", pretrained=False).state_dict()
key = "blocks.0.attn.qkv.weight"
print(torch.equal(model.state_dict()[key], saved[key]), torch.equal(fresh[key], saved[key]))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=engine_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True False"  # loaded, and not by chance


@pytest.mark.parametrize("choice, code", [("/no/such/file.pt", "weights_file_missing"),
                                          ("{tmp}/notes.pt", "weights_file_unreadable")])
def test_a_bad_local_weights_file_is_refused_before_training(tmp_path, choice, code):
    from geostudio_plugin.engine.protocol import EngineError
    from geostudio_plugin.engine.tuning.weights import resolve

    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(EngineError) as error:
        resolve("timm_resnet18", choice.format(tmp=tmp_path))
    assert error.value.code == code and str(Path(choice.format(tmp=tmp_path))) in error.value.message


def test_the_weights_table_agrees_with_terratorch_and_timm():
    """data/weights.json names the files TerraTorch and timm download themselves (so the cache serves them)."""
    import timm
    from terratorch.models.backbones import prithvi_vit
    from terratorch.models.backbones.clay_v1 import embedder
    from terratorch.models.backbones.terramind.model import terramind_register

    from geostudio_plugin.engine.catalog import backbones
    from geostudio_plugin.engine.tuning.weights import hub_table

    table = hub_table()
    assert {b["model_params"]["backbone"] for b in backbones()} == set(table)
    for name, where in table.items():
        if where["family"] == "prithvi":
            own = prithvi_vit.pretrained_weights[name]
            assert (own["hf_hub_id"], own["hf_hub_filename"]) == (where["repo_id"], where["filename"]), name
        elif where["family"] == "terramind":
            own = terramind_register.pretrained_weights[name]
            assert (own["hf_hub_id"], own["hf_hub_filename"]) == (where["repo_id"], where["filename"]), name
        elif where["family"] == "clay":
            own = embedder.default_cfgs[name].default
            assert (own.hf_hub_id.rstrip("/"), own.hf_hub_filename) == (where["repo_id"], where["filename"]), name
        else:
            assert timm.models.get_pretrained_cfg(name.removeprefix("timm_")).hf_hub_id == where["repo_id"], name


# ------------------------------------------------------------------------------- weights in a tune spec


@pytest.fixture(scope="module")
def dataset_id(tmp_path_factory) -> tuple[Path, str]:
    from conftest import onboarding_payload, run_ok

    workspace = tmp_path_factory.mktemp("weights") / "workspace"
    return workspace, run_ok("onboard", onboarding_payload(chip_size=128), workspace).result["summary"]["dataset_id"]


def test_a_tune_from_a_local_checkpoint_renders_it_for_terratorch_and_records_it(dataset_id, tmp_path):
    from conftest import run_ok, tune_payload

    from geostudio_plugin import contract

    workspace, dataset = dataset_id
    checkpoint = _safetensors_of_random_resnet18(tmp_path)
    spec = tune_payload(dataset, name="from-file")
    spec["train_options"]["weights"] = str(checkpoint)
    run = run_ok("tune", contract.tune_dry_run_spec(spec), workspace)
    config = run.result["summary"]["config_text"]
    assert "backbone_pretrained: true" in config
    assert f'backbone_pretrained_cfg_overlay: {{"file": "{checkpoint}"}}' in config
    record = json.loads((Path(run.result["outputs"]["tune_dir"]) / "tune.json").read_text())
    assert record["weights"] == {"origin": "file", "path": str(checkpoint), "pretrained": True}


def test_a_tune_asking_for_missing_published_weights_offline_says_which_file_and_where(dataset_id, tmp_path):
    from conftest import tune_payload

    workspace, dataset = dataset_id
    spec = tune_payload(dataset, name="pretrained")
    spec["train_options"]["weights"] = "pretrained"
    spec_path = tmp_path / "tune.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(engine_command(workspace, "tune", str(spec_path)), capture_output=True, text=True,
                          timeout=300, env={**engine_env(), "HF_HOME": str(tmp_path / "empty-hf")}, cwd=tmp_path)
    error = next(e for e in parse_stdout(done.stdout)[0] if e["event"] == "error")
    assert done.returncode != 0 and error["code"] == "weights_missing"
    assert "timm/resnet18.a1_in1k" in error["message"] and "model.safetensors" in error["message"]
    assert str(tmp_path / "empty-hf") in error["message"] and "train_options.weights: random" in error["hint"]
    assert not list((workspace / "tunes").glob("pretrained*")) if (workspace / "tunes").is_dir() else True
