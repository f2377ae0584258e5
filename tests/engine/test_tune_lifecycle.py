"""Running a tune (issue 12): dry run, per-step/per-epoch metrics, cancel that keeps the last checkpoint,
resume to the planned epochs with optimizer and scheduler state, a killed engine, out of memory.

The tunes are tiny (timm_resnet18, 64 px crops, a few batches per epoch) on the bundled Sen1Floods11 chips.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import (EXIT_CANCELLED, EXIT_INPUT, HOLDOUT_IMAGE, engine_command, engine_env, leftovers, onboarding_payload,
                      parse_stdout, run_engine, run_ok, tune_payload)

from geostudio_plugin import contract

EPOCHS = 2
BASE_LR = 1e-3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict[str, Any]:
    workspace = tmp_path_factory.mktemp("lifecycle") / "workspace"
    onboard = run_ok("onboard", onboarding_payload(chip_size=128), workspace)
    return {"workspace": workspace, "dataset_id": onboard.result["summary"]["dataset_id"]}


def lifecycle_payload(dataset_id: str, name: str, epochs: int = EPOCHS) -> dict[str, Any]:
    """A cosine schedule, so a resume that lost the scheduler's state would show in the learning rates."""
    spec = tune_payload(dataset_id, max_epochs=epochs, name=name)
    spec["model_parameters"]["lr_config"] = {"policy": "CosineAnnealing"}
    spec["model_parameters"]["optimizer"] = {"lr": BASE_LR}
    spec["model_parameters"]["data"]["batch_size"] = 8  # 8 batches an epoch: the file stays near 2 minutes
    return spec


class EngineProcess:
    """``python -m geostudio_plugin.engine tune`` in its own process group, its events read as they come."""

    def __init__(self, workspace: Path, spec_path: Path, log: Path) -> None:
        with log.open("w") as stderr:
            self.proc = subprocess.Popen(engine_command(workspace, "tune", str(spec_path)), stdout=subprocess.PIPE,
                                         stderr=stderr, text=True, env=engine_env(), start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the engine ended first: {self.events[-5:]}"
            event = json.loads(line)
            self.events.append(event)
            if predicate(event):
                return event

    def finish(self, timeout: float = 30) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        while True:
            try:
                line = self.lines.get(timeout=10)
            except queue.Empty:
                break
            if line is None:
                break
            self.events.append(json.loads(line))
        return rc


def second_epoch_running(event: dict[str, Any]) -> bool:
    """A batch of epoch 2 has ended: epoch 1 finished and its last.ckpt was saved before epoch 2 began."""
    return event["event"] == "progress" and event["stage"] == "train" and event["message"].startswith("epoch 2/") \
        and "batch" in event["message"]


def record_of(workspace: Path, tune_id: str) -> dict[str, Any]:
    return json.loads((workspace / "tunes" / tune_id / "tune.json").read_text())


# ------------------------------------------------------------------------------------- cancel and resume


def test_cancel_keeps_last_checkpoint_then_resume_continues_the_curve(dataset, tmp_path):
    workspace = dataset["workspace"]
    spec_path = tmp_path / "tune.json"
    spec_path.write_text(json.dumps(lifecycle_payload(dataset["dataset_id"], "cancel-resume")))
    engine = EngineProcess(workspace, spec_path, tmp_path / "stderr.log")
    engine.wait_for(second_epoch_running)
    os.killpg(engine.proc.pid, signal.SIGTERM)
    rc = engine.finish()
    assert rc == EXIT_CANCELLED, (tmp_path / "stderr.log").read_text()[-3000:]
    errors = [e for e in engine.events if e["event"] == "error"]
    assert [e["code"] for e in errors] == ["cancelled"]
    kept = [contract.kept_item(e) for e in engine.events if contract.kept_item(e)]
    assert len(kept) == 1 and kept[0]["status"] == "Cancelled" and kept[0]["epochs_run"] >= 1
    tune_id = kept[0]["id"]

    # per-step events (throttled) and per-epoch ones, with epoch/step/stage, lr and the task's metrics
    metrics = [e for e in engine.events if e["event"] == "metric"]
    steps = [m for m in metrics if m["stage"] == "step"]
    assert {"train/loss_step", "lr"} <= {m["name"] for m in steps}
    assert all(isinstance(m["step"], int) and m["epoch"] is not None for m in steps)
    epoch0 = {m["name"]: m for m in metrics if m["epoch"] == 0 and m["stage"] in ("train", "val")}
    assert {"train/loss", "val/loss", "val/mIoU", "lr", "train/mIoU", "val/IoU_Water", "val/F1_Score"} <= set(epoch0)
    assert epoch0["val/loss"]["stage"] == "val" and epoch0["train/loss"]["stage"] == "train"

    # kept, not rolled back: status, last.ckpt, config pointing at the kept folder, history up to the checkpoint
    tune_dir = workspace / "tunes" / tune_id
    record = record_of(workspace, tune_id)
    assert record["status"] == "Cancelled" and record["resumable"] and contract.is_resumable(record)
    assert (tune_dir / "checkpoints" / "last.ckpt").is_file()
    assert (tune_dir / record["checkpoint"]).is_file()  # the best weights so far
    assert str(tune_dir) in (tune_dir / "config.yaml").read_text() and "/.tmp/" not in (tune_dir / "config.yaml").read_text()
    saved = record["epochs_run"]
    assert saved >= 1 and [h["epoch"] for h in record["history"]] == list(range(saved))
    assert (tune_dir / "engine.log").is_file() and "epoch 1/" in (tune_dir / "engine.log").read_text()
    assert leftovers(workspace) == []
    listed = run_ok("list", None, workspace).result["summary"]["tunes"]
    assert {"tune_id": tune_id, "status": "Cancelled", "resumable": True}.items() <= \
        next(t for t in listed if t["tune_id"] == tune_id).items()

    # resume: the same tune, on to the planned epochs; the curve continues
    resume_spec = contract.tune_resume_spec(record, device="cpu")
    run = run_ok("tune", resume_spec, workspace, timeout=400)
    assert run.result["summary"]["tune_id"] == tune_id and run.result["summary"]["resumed"]
    record = record_of(workspace, tune_id)
    assert record["status"] == "Finished" and record["epochs_run"] == EPOCHS
    history = record["history"]
    assert [h["epoch"] for h in history] == list(range(EPOCHS))  # 0..N-1, no repeats, no restart from 0
    resumed_epochs = sorted({m["epoch"] for m in run.of("metric") if m["stage"] in ("train", "val")})
    assert resumed_epochs == list(range(saved, EPOCHS))  # the first resumed epoch follows the last saved
    steps_per_epoch = history[0]["step"]
    assert [h["step"] for h in history] == [steps_per_epoch * (e + 1) for e in range(EPOCHS)]
    # the scheduler's state came back: the cosine schedule of one uninterrupted run (the history's lr is the
    # rate after the epoch's scheduler step; a fresh scheduler would give epoch 1 the rate of epoch 0)
    expected = [BASE_LR * (1 + math.cos(math.pi * (e + 1) / EPOCHS)) / 2 for e in range(EPOCHS)]
    assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-4)
    assert record["resumed"] and record["resumed"][0]["at_epoch"] == saved
    assert not (workspace / "tunes" / tune_id / "checkpoints" / "last.ckpt").exists()
    assert (workspace / "tunes" / tune_id / record["checkpoint"]).is_file()
    assert len(list((workspace / "tunes").glob(f"{tune_id}*"))) == 1
    assert leftovers(workspace) == []

    # a finished tune is not resumable
    again = run_engine("tune", resume_spec, workspace)
    assert again.returncode == EXIT_INPUT and again.error["code"] == "not_resumable", again.describe()


# ------------------------------------------------------------------------------------------------ dry run


def test_dry_run_renders_the_config_and_keeps_it(dataset):
    workspace = dataset["workspace"]
    spec = contract.tune_dry_run_spec(lifecycle_payload(dataset["dataset_id"], "dry-run"))
    started = time.monotonic()
    run = run_ok("tune", spec, workspace)
    summary = run.result["summary"]
    assert summary["status"] == "DryRun" and "config_text" in summary
    assert time.monotonic() - started < 60  # nothing is trained
    tune_dir = Path(run.result["outputs"]["tune_dir"])
    text = (tune_dir / "config.yaml").read_text()
    assert text == summary["config_text"] == Path(run.result["outputs"]["config"]).read_text()
    assert "class_path: terratorch.tasks.SemanticSegmentationTask" in text and "max_epochs: 2" in text
    assert str(tune_dir) in text and "CosineAnnealingLR" in text
    record = record_of(workspace, summary["tune_id"])
    assert record["status"] == "DryRun" and record["checkpoint"] is None and not record.get("resumable")
    assert sorted(p.name for p in tune_dir.iterdir()) == ["config.yaml", "tune.json"]
    assert not [e for e in run.of("metric")] and leftovers(workspace) == []

    # a dry run is not a model: inference names it and the finished tunes instead of failing on the record
    infer = run_engine("infer", contract.infer_spec(str(HOLDOUT_IMAGE), None, summary["tune_id"], "cpu"), workspace)
    assert infer.returncode != 0 and infer.error["code"] == "model_not_ready" and summary["tune_id"] in infer.error["message"]
    assert "DryRun" in infer.error["message"] and "Resume" in infer.error["hint"]


# ------------------------------------------------------------------------------------- a killed engine


def test_killed_engine_leaves_a_failed_tune_with_its_log(dataset, tmp_path):
    workspace = dataset["workspace"]
    spec_path = tmp_path / "tune.json"
    spec_path.write_text(json.dumps(lifecycle_payload(dataset["dataset_id"], "killed", epochs=20)))
    engine = EngineProcess(workspace, spec_path, tmp_path / "stderr.log")
    engine.wait_for(second_epoch_running)
    os.killpg(engine.proc.pid, signal.SIGKILL)
    assert engine.finish() == -signal.SIGKILL
    assert list((workspace / ".tmp").glob("tunes-killed-*"))  # what the dead engine left
    listed = run_ok("list", None, workspace).result["summary"]  # the next engine command looks at it
    tune = next(t for t in listed["tunes"] if t["name"] == "killed")
    assert tune["status"] == "Failed" and tune["resumable"] and tune["error"]["code"] == "engine_died"
    record = record_of(workspace, tune["tune_id"])
    assert record["epochs_run"] >= 1 and record["log_tail"] and "engine.log" == record["log"]
    assert any("last checkpoint saved" in line for line in record["log_tail"])
    assert (workspace / "tunes" / tune["tune_id"] / "checkpoints" / "last.ckpt").is_file()
    assert not list((workspace / ".tmp").glob("tunes-killed-*"))
