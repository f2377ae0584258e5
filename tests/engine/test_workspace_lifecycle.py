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
