"""Training beyond one process: a real 2-process DDP fine-tune on the CPU (gloo) through the engine, the DDP
settings' checks, and the self-contained cluster export (run with torchrun, moved to another folder first).

Nothing is mocked: the engine trains ResNet-18 on the bundled Sen1Floods11 chips with two ranks.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import (EXIT_INVALID_SPEC, EXIT_OK, REPO, engine_env, leftovers, onboarding_payload, run_engine,
                      run_ok, tune_payload)

TEMPLATES = REPO / "geostudio_plugin" / "engine" / "data" / "templates"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("distributed") / "workspace"
    onboard = run_ok("onboard", onboarding_payload(chip_size=128), workspace)
    return {"workspace": workspace, "dataset_id": onboard.result["summary"]["dataset_id"],
            "dataset_dir": Path(onboard.result["outputs"]["dataset_dir"])}


def _spec(dataset_id: str, **train_options: Any) -> dict[str, Any]:
    spec = tune_payload(dataset_id, name="ddp-tiny")
    spec["model_parameters"]["data"]["batch_size"] = 2
    spec["train_options"].update(train_options)
    return spec


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status  # a zombie has finished


def test_ddp_two_cpu_processes_train_one_model(dataset: dict[str, Any]) -> None:
    """devices 2, strategy ddp on the CPU: both ranks train (each writes what it trained), rank 0 alone speaks the
    protocol (one result event, every stdout line an event), one tune folder with one model, no process left."""
    workspace = dataset["workspace"]
    started = time.monotonic()
    run = run_engine("tune", _spec(dataset["dataset_id"], devices=2, strategy="ddp", limit_train_batches=2),
                     workspace, timeout=300)
    seconds = time.monotonic() - started
    assert run.returncode == EXIT_OK, run.describe()
    assert len(run.of("result")) == 1 and run.error is None
    tune_dir = Path(run.result["outputs"]["tune_dir"])
    assert [p.name for p in (workspace / "tunes").iterdir()] == [tune_dir.name]  # one tune, no second staging
    assert not leftovers(workspace)
    record = json.loads((tune_dir / "tune.json").read_text())
    assert record["status"] == "Finished" and record["epochs_run"] == 1
    assert record["trainer"]["devices"] == 2 and record["trainer"]["strategy"] == "ddp_find_unused_parameters_true"
    config = yaml.safe_load((tune_dir / "config.yaml").read_text())["trainer"]
    assert (config["devices"], config["strategy"], config["num_nodes"]) == (2, "ddp_find_unused_parameters_true", 1)
    # both ranks trained: each wrote its report (Lightning's DDPStrategy on gloo, two processes)
    ranks = sorted((json.loads(p.read_text()) for p in (tune_dir / "ranks").glob("rank-*.json")),
                   key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1], ranks
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" and r["strategy"] == "DDPStrategy" for r in ranks)
    assert all(r["batches"] == 2 for r in ranks), ranks  # limit_train_batches 2, on each rank
    assert len({r["pid"] for r in ranks}) == 2
    assert record["distributed"]["world_size"] == 2 and len(record["distributed"]["ranks"]) == 2
    # one model: the best state dict and the deploy config, written once by rank 0
    assert (tune_dir / record["checkpoint"]).is_file() and (tune_dir / "config_deploy.yaml").is_file()
    assert len(list((tune_dir / "checkpoints").glob("best-state_dict-*.ckpt"))) == 1
    # rank 0 is the engine; the worker ran `python -m ...tuning.train` and is gone
    assert ranks[0]["pid"] != ranks[1]["pid"]
    assert not any(_alive(r["pid"]) for r in ranks)
    assert "training finished" not in run.stdout and all(e["event"] != "error" for e in run.events)
    print(f"2-process DDP tune: {seconds:.1f} s")


@pytest.mark.parametrize("options, field", [
    ({"num_nodes": 2}, "train_options.num_nodes"),
    ({"devices": 64}, "train_options.devices"),
])
def test_distributed_settings_that_cannot_run_are_refused(dataset: dict[str, Any], options: dict[str, Any],
                                                          field: str) -> None:
    run = run_engine("tune", _spec(dataset["dataset_id"], **options), dataset["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "distributed_invalid" and field in run.error["message"], run.error
    assert run.error["hint"]


def test_unknown_strategy_names_the_allowed_ones(dataset: dict[str, Any]) -> None:
    run = run_engine("tune", _spec(dataset["dataset_id"], strategy="ddp_spawn"), dataset["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC and run.error["code"] == "invalid_spec", run.describe()
    text = json.dumps(run.error)
    assert "train_options.strategy" in text and "'auto'" in text and "'ddp'" in text, text


def test_every_template_renders_strategy_and_nodes() -> None:
    """One trainer dict, rendered the same way by every built-in template (strategy/num_nodes only for DDP)."""
    for path in sorted(TEMPLATES.glob("*.yaml.j2")):
        text = path.read_text()
        trainer = re.search(r"^trainer:\n((?:[ {].*\n)+)", text, re.M).group(1)
        assert "strategy: {{ trainer.strategy }}" in trainer and "num_nodes: {{ trainer.num_nodes }}" in trainer, path
        assert "limit_train_batches: {{ trainer.limit_train_batches }}" in trainer, path


def test_dry_run_renders_ddp(dataset: dict[str, Any]) -> None:
    run = run_ok("tune", _spec(dataset["dataset_id"], devices=2, dry_run=True), dataset["workspace"])
    trainer = yaml.safe_load(run.result["summary"]["config_text"])["trainer"]
    assert (trainer["devices"], trainer["strategy"], trainer["num_nodes"]) == (2, "ddp_find_unused_parameters_true", 1)
    run = run_ok("tune", _spec(dataset["dataset_id"], dry_run=True), dataset["workspace"])
    trainer = yaml.safe_load(run.result["summary"]["config_text"])["trainer"]
    assert trainer["devices"] == 1 and "strategy" not in trainer and "num_nodes" not in trainer


def test_cluster_export_is_self_contained_and_trains_with_torchrun(dataset: dict[str, Any], tmp_path: Path) -> None:
    """train_options.export_cluster writes config + dataset + torchrun/SLURM scripts; the folder, moved elsewhere,
    trains one tiny epoch with launch_torchrun.sh (1 process, CPU, offline) and leaves the model in it."""
    import os
    import shutil
    import subprocess
    import sys

    target = tmp_path / "export"
    spec = _spec(dataset["dataset_id"], devices=2, num_nodes=2, limit_train_batches=2, export_cluster=str(target))
    run = run_ok("tune", spec, dataset["workspace"])
    assert run.result["summary"]["status"] == "Exported" and run.result["summary"]["processes"] == 4
    assert not (dataset["workspace"] / "tunes").exists() or not any(
        json.loads((p / "tune.json").read_text()).get("status") == "Exported"
        for p in (dataset["workspace"] / "tunes").iterdir())  # nothing kept in the workspace
    # a second export into the now non-empty folder is refused before any work
    again = run_engine("tune", spec, dataset["workspace"])
    assert again.error["code"] == "export_path_unusable" and "train_options.export_cluster" in again.error["message"]

    moved = tmp_path / "elsewhere" / "job"
    moved.parent.mkdir()
    shutil.move(str(target), moved)
    config = yaml.safe_load((moved / "config.yaml").read_text())
    assert config["trainer"]["num_nodes"] == 2 and config["trainer"]["devices"] == 2
    paths = {k: v for k, v in config["data"]["init_args"].items() if isinstance(v, str) and "/" in v}
    assert paths, config["data"]
    for key, value in paths.items():  # relative, and inside the folder
        assert not Path(value).is_absolute(), (key, value)
        resolved = (moved / value).resolve()
        assert resolved.exists() and moved.resolve() in resolved.parents, (key, value)
    assert config["trainer"]["default_root_dir"] == "."
    for name in ("launch_torchrun.sh", "launch_slurm.sbatch"):
        script = moved / name
        assert os.access(script, os.X_OK), name
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, name
    slurm = (moved / "launch_slurm.sbatch").read_text()
    assert "#SBATCH --nodes=2" in slurm and "#SBATCH --ntasks-per-node=2" in slurm and "srun " in slurm
    readme = (moved / "README.txt").read_text()
    assert "launch_torchrun.sh" in readme and "config_deploy.yaml" in readme

    env = {k: v for k, v in engine_env().items() if k != "PYTHONPATH"}  # no GeoStudio code on the cluster
    env.update({"PYTHON": sys.executable, "NPROC_PER_NODE": "1", "NNODES": "1", "MASTER_PORT": str(_port()),
                "HF_HUB_OFFLINE": "1"})
    started = time.monotonic()
    job = subprocess.run([str(moved / "launch_torchrun.sh")], cwd=str(tmp_path), env=env, capture_output=True,
                         text=True, timeout=400)
    assert job.returncode == 0, job.stderr[-3000:]
    assert len(list((moved / "checkpoints").glob("best-state_dict-*.ckpt"))) == 1
    assert (moved / "config_deploy.yaml").is_file() and (moved / "metrics.csv").is_file()
    print(f"launch_torchrun.sh, 1 process, 1 epoch: {time.monotonic() - started:.1f} s")


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
