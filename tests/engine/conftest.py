"""Engine-side fixtures: run the real engine CLI as a subprocess and read its JSON-lines events.

Run with the engine's own Python (it has torch, terratorch, rasterio, ...):

    ENGINE_PY=$(PYTHONPATH=$PWD python3 -m geostudio_plugin.engine_runtime python)
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 $ENGINE_PY -m pytest tests/engine -q -p no:cacheprovider

Nothing is mocked. One tiny model is trained per session (``trained``); everything else is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
TRAIN_DIR = SAMPLES / "train"
HOLDOUT_IMAGE = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"
DEMO_ONBOARD = REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json"
TRAIN_STEMS = sorted(p.name[: -len("_S1Hand.tif")] for p in TRAIN_DIR.glob("*_S1Hand.tif"))

# The tiny model of the brief: one epoch, small crops, a narrow decoder, on the CPU.
TINY_MODEL_PARAMETERS = {"runner": {"max_epochs": 1}, "data": {"batch_size": 4, "crop_size": 64},
                         "model": {"decode_head": {"channels": 32}}}

# Exit codes of geostudio_plugin/engine/protocol.py (kept literal here: the tests pin the documented values).
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INVALID_SPEC, EXIT_INPUT, EXIT_EXTERNAL, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5, 130

EVENT_KINDS = {"progress", "log", "metric", "result", "error"}


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("GEOSTUDIO_WORKSPACE", None)  # every test names its workspace with --workspace
    return env


def engine_command(workspace: Optional[Path], *args: str) -> list[str]:
    cmd = [sys.executable, "-m", "geostudio_plugin.engine"]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    return cmd + list(args)


def parse_stdout(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(events, lines that are not a JSON object with an "event" key)."""
    events, bad = [], []
    for line in stdout.splitlines():
        if not line.strip():
            bad.append(line)
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if isinstance(obj, dict) and "event" in obj:
            events.append(obj)
        else:
            bad.append(line)
    return events, bad


class EngineRun(tuple):
    """``(returncode, events)``, plus ``stdout``, ``stderr`` and ``bad_lines`` for protocol checks."""

    def __new__(cls, returncode: int, events: list[dict[str, Any]], stdout: str, stderr: str, bad_lines: list[str]):
        self = super().__new__(cls, (returncode, events))
        self.returncode, self.events, self.stdout, self.stderr, self.bad_lines = (
            returncode, events, stdout, stderr, bad_lines)
        return self

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    @property
    def result(self) -> Optional[dict[str, Any]]:
        found = self.of("result")
        return found[-1] if found else None

    @property
    def error(self) -> Optional[dict[str, Any]]:
        found = self.of("error")
        return found[-1] if found else None

    def describe(self) -> str:
        return f"exit {self.returncode}; error {self.error}; stderr tail:\n{self.stderr[-3000:]}"


def run_engine(command: str, spec: Union[dict, str, Path, None] = None, workspace: Optional[Path] = None,
               stdin: Optional[str] = None, timeout: float = 300, strict: bool = True) -> EngineRun:
    """Run ``python -m geostudio_plugin.engine [--workspace W] command [SPEC]`` and parse its events.

    ``spec`` is a dict (written to a JSON file next to the workspace), a path, or a literal string such as "-".
    With ``strict`` every stdout line must be a JSON object with an "event" key (the protocol's promise).
    """
    args = [command]
    # the engine runs in the workspace's parent folder (or a fresh temporary one), never in the repository
    folder = workspace.parent if workspace is not None else Path(tempfile.mkdtemp(prefix="engine-cwd-"))
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, dict):
        fd, spec_path = tempfile.mkstemp(prefix=f"spec-{command}-", suffix=".json", dir=folder)
        with os.fdopen(fd, "w") as handle:
            json.dump(spec, handle)
        args.append(spec_path)
    elif spec is not None:
        args.append(str(spec))
    proc = subprocess.run(engine_command(workspace, *args), input=stdin, capture_output=True, text=True,
                          env=engine_env(), cwd=str(folder), timeout=timeout)
    events, bad = parse_stdout(proc.stdout)
    run = EngineRun(proc.returncode, events, proc.stdout, proc.stderr, bad)
    if strict:
        assert not bad, f"non-event lines on the engine's stdout: {bad[:5]!r}"
    return run


def run_ok(command: str, spec: Union[dict, str, Path, None] = None, workspace: Optional[Path] = None,
           **kwargs: Any) -> EngineRun:
    run = run_engine(command, spec, workspace, **kwargs)
    assert run.returncode == EXIT_OK, run.describe()
    assert run.result is not None, "no result event"
    assert run.error is None
    return run


def onboarding_payload(dataset_url: Union[str, Path] = TRAIN_DIR, name: str = "Sen1Floods11 water",
                       chip_size: Optional[int] = None, **options: Any) -> dict[str, Any]:
    payload = json.loads(DEMO_ONBOARD.read_text())
    payload["dataset_name"] = name
    payload["dataset_url"] = str(dataset_url)
    payload["onboarding_options"]["chip_size"] = chip_size
    payload["onboarding_options"].update(options)
    return payload


def tune_payload(dataset_id: str, max_epochs: int = 1, name: str = "tiny-test") -> dict[str, Any]:
    params = json.loads(json.dumps(TINY_MODEL_PARAMETERS))
    params["runner"]["max_epochs"] = max_epochs
    return {"name": name, "dataset_id": dataset_id, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "model_parameters": params,
            "train_options": {"accelerator": "cpu"}}


def leftovers(workspace: Path, kind: Optional[str] = None) -> list[str]:
    """Anything in <workspace>/.tmp, plus anything in <workspace>/<kind> when kind is given."""
    found = [str(p) for p in (workspace / ".tmp").iterdir()] if (workspace / ".tmp").is_dir() else []
    if kind and (workspace / kind).is_dir():
        found += [str(p) for p in (workspace / kind).iterdir()]
    return found


def copy_samples(target: Path, stems: Optional[list[str]] = None) -> Path:
    """A writable copy of (some of) the training pairs."""
    target.mkdir(parents=True, exist_ok=True)
    for stem in stems or TRAIN_STEMS:
        for suffix in ("_S1Hand.tif", "_LabelHand.tif"):
            shutil.copyfile(TRAIN_DIR / f"{stem}{suffix}", target / f"{stem}{suffix}")
    return target


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's one tiny model: onboard the sample chips (128 px), fine-tune ResNet-18 for one epoch."""
    session_dir = tmp_path_factory.mktemp("session")
    workspace = session_dir / "workspace"
    onboard = run_ok("onboard", onboarding_payload(chip_size=128), workspace)
    dataset_dir = Path(onboard.result["outputs"]["dataset_dir"])
    tune = run_engine("tune", tune_payload(onboard.result["summary"]["dataset_id"]), workspace,
                      timeout=600, strict=False)  # the protocol test checks this run's stdout line by line
    assert tune.returncode == EXIT_OK, tune.describe()
    tune_dir = Path(tune.result["outputs"]["tune_dir"])
    return {
        "session_dir": session_dir,
        "workspace": workspace,
        "dataset_dir": dataset_dir,
        "dataset": json.loads((dataset_dir / "dataset.json").read_text()),
        "tune_run": tune,
        "tune_dir": tune_dir,
        "tune": json.loads((tune_dir / "tune.json").read_text()),
    }


def run_and_cancel(command: str, spec: Path, workspace: Path, when: Any, log: Path,
                   timeout: float = 240) -> tuple[int, list[dict[str, Any]], int]:
    """Start ``command`` in its own process group, SIGTERM the group (the task manager's Cancel) at the first
    event for which ``when(event)`` is true; returns (exit status, events, the group's id)."""
    import queue
    import signal
    import threading
    import time

    with log.open("w") as stderr:
        proc = subprocess.Popen(engine_command(workspace, command, str(spec)), stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env=engine_env(), start_new_session=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"{command} ended before the moment to cancel it: {seen[-5:]}"
            seen.append(line)
            if when(json.loads(line)):
                break
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=30)  # a hang bound, not a benchmark: a loaded 2-core machine is slow to switch
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        line = lines.get()
        if line is not None:
            seen.append(line)
    events, bad = parse_stdout("".join(seen))
    assert not bad
    return rc, events, proc.pid
