"""The workspace's life cycle: a read-only workspace, items in use (locks), a tune's tiling checked before
inference, and inference outputs checked before work and recorded only when all are in place (issue 9).

The read-only workspace is a real read-only file system (a tmpfs remounted ``ro``): the tests run as root,
and root writes through ``chmod a-w`` folders, so permissions cannot make a folder read-only here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import (EXIT_INPUT, EXIT_OK, HOLDOUT_IMAGE, TRAIN_DIR, engine_command, engine_env, leftovers,
                      onboarding_payload, parse_stdout, run_engine, run_ok, tune_payload)

# ------------------------------------------------------------------------------------- read-only workspace


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@contextlib.contextmanager
def read_only_mount(folder: Path, prepare) -> Iterator[Path]:
    """A tmpfs at ``folder``, filled by ``prepare(folder)`` and then remounted read-only; unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {exc}")
    try:
        prepare(folder)
        _mount("-o", "remount,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill_workspace(workspace: Path) -> None:
    for kind in ("datasets", "tunes", "inferences", "fetched", ".tmp"):
        (workspace / kind).mkdir(parents=True)
    (workspace / "datasets" / "kept-1").mkdir()
    (workspace / "datasets" / "kept-1" / "dataset.json").write_text(json.dumps({"dataset_id": "kept-1"}))


@pytest.fixture()
def read_only_workspace(tmp_path: Path) -> Iterator[Path]:
    with read_only_mount(tmp_path / "ws", _fill_workspace) as workspace:  # the spec files go beside it
        yield workspace


WRITING_COMMANDS = {
    "onboard": onboarding_payload(chip_size=128),
    "prescan": {"dataset_url": str(TRAIN_DIR), "label_suffix": "_LabelHand.tif",
                "training_data_suffixes": ["_S1Hand.tif"]},
    "tune": tune_payload("kept-1"),
    "infer": {"fine_tuning_id": "some-tune", "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}, "device": "cpu"},
    "delete": {"kind": "datasets", "id": "kept-1"},
    "fetch": {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [0, 0, 0.01, 0.01],
              "dates": ["2024-01-01"]},
}


@pytest.mark.parametrize("command", sorted(WRITING_COMMANDS))
def test_read_only_workspace_is_refused_before_any_work(read_only_workspace: Path, command: str):
    run = run_engine(command, WRITING_COMMANDS[command], read_only_workspace, timeout=60)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "workspace_unusable", run.error
    assert "read-only" in run.error["message"] and str(read_only_workspace) in run.error["message"]
    assert "--workspace" in run.error["hint"] and "read-write" in run.error["hint"]
    assert [e for e in run.of("progress")] == []  # refused before any work
    assert "Traceback" not in run.stderr
    assert (read_only_workspace / "datasets" / "kept-1" / "dataset.json").is_file()


def test_read_only_workspace_can_still_be_listed(read_only_workspace: Path):
    run = run_ok("list", None, read_only_workspace)
    assert [d["dataset_id"] for d in run.result["summary"]["datasets"]] == ["kept-1"]


# -------------------------------------------------------------------------------------------- items in use


def _lock_files(workspace: Path, kind: str, item_id: str) -> list[Path]:
    return sorted((workspace / "locks").glob(f"{kind}-{item_id}.*.lock")) if (workspace / "locks").is_dir() else []


def test_delete_refuses_a_dataset_a_tune_is_training_on(trained, tmp_path: Path):
    """The issue's case: delete returned 0 and the tune died (RasterioIOError). Now: refused, naming the tune."""
    workspace = tmp_path / "ws"
    dataset_id = trained["dataset"]["dataset_id"]
    shutil.copytree(trained["dataset_dir"], workspace / "datasets" / dataset_id)
    spec = tmp_path / "tune.json"
    spec.write_text(json.dumps(tune_payload(dataset_id, max_epochs=1, name="busy")))
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(engine_command(workspace, "tune", str(spec)), stdout=subprocess.PIPE, stderr=stderr,
                            text=True, env=engine_env(), start_new_session=True)
    seen: list[str] = []
    try:
        for line in proc.stdout:  # wait until it trains: the dataset is being read now
            seen.append(line)
            event = json.loads(line)
            if event["event"] == "progress" and event["stage"] == "train":
                break
        else:
            pytest.fail(f"the tune ended before training: {seen[-3:]}")
        held = [json.loads(p.read_text()) for p in _lock_files(workspace, "datasets", dataset_id)]
        run = run_engine("delete", {"kind": "datasets", "id": dataset_id}, workspace)
        rest, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        stderr.close()
    assert run.returncode == EXIT_INPUT, run.describe()
    assert [(h["command"], h["pid"]) for h in held] == [("tune", proc.pid)]
    assert run.error["code"] == "in_use"
    message = run.error["message"]
    assert dataset_id in message and "`tune`" in message and f"pid {proc.pid}" in message and "since" in message
    assert (workspace / "datasets" / dataset_id / "dataset.json").is_file()
    events, bad = parse_stdout("".join(seen) + rest)
    assert not bad
    assert proc.returncode == EXIT_OK, (tmp_path / "stderr.log").read_text()[-3000:]
    assert [e for e in events if e["event"] == "result"]
    assert _lock_files(workspace, "datasets", dataset_id) == []  # released when the tune ended
    run_ok("delete", {"kind": "datasets", "id": dataset_id}, workspace)  # and now it can go
    assert not (workspace / "datasets" / dataset_id).exists()


def _hand_lock(workspace: Path, kind: str, item_id: str, **fields: Any) -> Path:
    (workspace / "locks").mkdir(parents=True, exist_ok=True)
    info = {"kind": kind, "id": item_id, "command": "tune", "pid": os.getpid(), "host": "otherhost",
            "hostname": "otherhost", "since": "2026-01-01T00:00:00+0000", "since_ts": time.time(), **fields}
    path = workspace / "locks" / f"{kind}-{item_id}.{info['host']}-pid{info['pid']}-abc.lock"
    path.write_text(json.dumps(info))
    return path


def _host() -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:20] or "host"


@pytest.fixture()
def one_dataset(tmp_path: Path) -> tuple[Path, str]:
    workspace = tmp_path / "ws"
    (workspace / "datasets" / "ds-1").mkdir(parents=True)
    (workspace / "datasets" / "ds-1" / "dataset.json").write_text(json.dumps({"dataset_id": "ds-1"}))
    return workspace, "ds-1"


def test_a_live_lock_from_another_host_refuses_delete(one_dataset):
    workspace, item = one_dataset
    lock = _hand_lock(workspace, "datasets", item, pid=1, since_ts=time.time() - 3600)
    run = run_engine("delete", {"kind": "datasets", "id": item}, workspace)
    assert run.returncode == EXIT_INPUT and run.error["code"] == "in_use", run.describe()
    assert "pid 1 on otherhost" in run.error["message"]
    assert lock.is_file() and (workspace / "datasets" / item).is_dir()


@pytest.mark.parametrize("case", ["dead-pid-here", "old-other-host", "unreadable"])
def test_a_stale_lock_is_broken(one_dataset, case):
    workspace, item = one_dataset
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    if case == "dead-pid-here":
        lock = _hand_lock(workspace, "datasets", item, pid=dead.pid, host=_host())
    elif case == "old-other-host":
        lock = _hand_lock(workspace, "datasets", item, since_ts=time.time() - 25 * 3600)
    else:
        lock = _hand_lock(workspace, "datasets", item)
        lock.write_text("{not json")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
    run_ok("delete", {"kind": "datasets", "id": item}, workspace)
    assert not lock.exists() and not (workspace / "datasets" / item).exists()


def test_a_lock_for_another_item_with_a_longer_id_does_not_count(one_dataset):
    workspace, item = one_dataset
    _hand_lock(workspace, "datasets", item + ".2")  # ids may hold dots: "ds-1.2" is not "ds-1"
    run_ok("delete", {"kind": "datasets", "id": item}, workspace)


# ------------------------------------------------------------------------------- inference: tiling, outputs


def _infer_spec(tune_id: str, **extra: Any) -> dict[str, Any]:
    return {"fine_tuning_id": tune_id, "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}, "device": "cpu", **extra}


@pytest.fixture()
def tune_copy(trained, tmp_path: Path) -> tuple[Path, Path]:
    """A fresh workspace with a copy of the session's tune (to edit by hand)."""
    workspace = tmp_path / "ws"
    tune_dir = workspace / "tunes" / trained["tune_dir"].name
    shutil.copytree(trained["tune_dir"], tune_dir)
    return workspace, tune_dir


@pytest.mark.parametrize("field, value", [("h_stride", 0), ("w_crop", 0), ("w_stride", -3), ("h_crop", "big"),
                                          ("h_stride", 1000)])
def test_a_hand_edited_tiling_is_refused_before_inference(tune_copy, field, value):
    workspace, tune_dir = tune_copy
    deploy = tune_dir / "config_deploy.yaml"
    config = yaml.safe_load(deploy.read_text())
    tiles = config["model"]["init_args"].setdefault("tiled_inference_parameters", {})
    tiles.update({"h_crop": 64, "w_crop": 64, "h_stride": 48, "w_stride": 48})
    tiles[field] = value
    deploy.write_text(yaml.safe_dump(config))
    run = run_engine("infer", _infer_spec(tune_dir.name), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "tune_tiling_invalid"
    assert field in run.error["message"] and str(deploy) in run.error["message"]
    assert not [e for e in run.of("progress") if e["stage"] == "predict"]  # refused before it started
    assert not any((workspace / "inferences").iterdir()) and leftovers(workspace) == []
    assert not any((workspace / "locks").glob("*.lock"))


def test_output_path_that_is_a_folder_is_refused_before_work(trained, tmp_path: Path):
    """The issue's case: IsADirectoryError (exit 1) after the run was already recorded as completed."""
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").iterdir())
    folder = tmp_path / "out"
    folder.mkdir()
    run = run_engine("infer", _infer_spec(trained["tune"]["tune_id"], output_path=str(folder)), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "output_path_unusable"
    assert str(folder) in run.error["message"] and "folder" in run.error["message"]
    assert not [e for e in run.of("progress") if e["stage"] == "predict"]
    assert sorted(p.name for p in (workspace / "inferences").iterdir()) == before
    assert list(folder.iterdir()) == [] and leftovers(workspace) == []


def test_output_path_on_a_read_only_file_system_is_refused_before_work(trained, tmp_path: Path):
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").iterdir())
    with read_only_mount(tmp_path / "ro", lambda folder: (folder / "sub").mkdir()) as ro:
        target = ro / "sub" / "deeper" / "prediction.tif"
        run = run_engine("infer", _infer_spec(trained["tune"]["tune_id"], output_path=str(target)), workspace)
        assert run.returncode == EXIT_INPUT, run.describe()
        assert run.error["code"] == "output_path_unusable"
        assert str(target) in run.error["message"] and "read-only" in run.error["message"]
    assert sorted(p.name for p in (workspace / "inferences").iterdir()) == before
    assert leftovers(workspace) == []


def test_a_run_is_recorded_only_after_output_path_is_written(trained, tmp_path: Path, monkeypatch):
    """Copying to output_path fails (a full disk, say): no run is recorded, nothing is left (in-process)."""
    import importlib

    from geostudio_plugin.engine.inference.spec import InferSpec
    from geostudio_plugin.engine.workspace import Workspace

    infer_module = importlib.import_module("geostudio_plugin.engine.inference.infer")
    workspace = tmp_path / "ws"
    shutil.copytree(trained["tune_dir"], workspace / "tunes" / trained["tune_dir"].name)
    target = tmp_path / "out" / "prediction.tif"

    def disk_full(source: Path, destination: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(infer_module, "_copy_atomically", disk_full)
    spec = InferSpec.model_validate(_infer_spec(trained["tune"]["tune_id"], output_path=str(target)))
    with pytest.raises(OSError):
        infer_module.infer(spec, Workspace(workspace).prepare("infer"))
    assert not any((workspace / "inferences").iterdir())  # not recorded as completed
    assert not target.exists() and leftovers(workspace) == []
    assert not any((workspace / "locks").glob("*.lock"))


# ------------------------------------------------------------------------------ records changed by hand


def test_a_dataset_record_changed_by_hand_is_named_not_a_traceback(one_dataset):
    workspace, item = one_dataset  # its dataset.json holds only dataset_id
    run = run_engine("tune", tune_payload(item), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "record_invalid"
    assert str(workspace / "datasets" / item / "dataset.json") in run.error["message"]
    assert "purpose" in run.error["message"]
    assert leftovers(workspace, "tunes") == [] and not any((workspace / "locks").glob("*.lock"))


def test_a_tune_record_that_is_not_json_is_named_not_a_traceback(tmp_path: Path):
    workspace = tmp_path / "ws"
    (workspace / "tunes" / "t-1").mkdir(parents=True)
    (workspace / "tunes" / "t-1" / "tune.json").write_text("{broken")
    run = run_engine("infer", _infer_spec("t-1"), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "record_invalid" and "tune.json" in run.error["message"]
    assert leftovers(workspace, "inferences") == []


@pytest.mark.parametrize("damage", ["missing", "not-yaml"])
def test_a_damaged_deploy_config_is_named_not_a_traceback(tune_copy, damage):
    workspace, tune_dir = tune_copy
    deploy = tune_dir / "config_deploy.yaml"
    if damage == "missing":
        deploy.unlink()
    else:
        deploy.write_text("model: [unclosed\n")
    run = run_engine("infer", _infer_spec(tune_dir.name), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "record_invalid" and str(deploy) in run.error["message"]
    assert not any((workspace / "inferences").iterdir()) and leftovers(workspace) == []
