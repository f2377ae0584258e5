"""Run one engine command as a child process and read its JSON-lines events.

Standard library only. ``tasks.EngineTask`` (the QgsTask bridge), the
Processing algorithms and ``scripts/demo.py`` all drive the engine through
``EngineJob``, so every caller gets the same environment cleaning, spec
handling, cancellation and error mapping.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from . import engine_runtime
from .contract import EVENT_LOG, EXIT_CANCELLED, EngineFailure, is_error, is_log, is_progress, is_result

EventCallback = Callable[[dict[str, Any]], None]
CancelCheck = Callable[[], bool]

CANCEL_GRACE_S = 3.0  # SIGTERM first; SIGKILL after this; well inside the 5 s promise


@dataclass
class JobOutcome:
    command: str
    returncode: Optional[int] = None
    result: Optional[dict[str, Any]] = None
    error: Optional[dict[str, Any]] = None
    cancelled: bool = False
    log_path: Optional[Path] = None
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None and not self.cancelled

    def stderr_tail(self, max_chars: int = 6000) -> str:
        if not self.log_path or not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-max_chars:]

    def failure(self) -> EngineFailure:
        """What went wrong, for the user: the engine's error event, else a generic one pointing at the log."""
        log_path = str(self.log_path) if self.log_path else None
        if self.cancelled:
            return EngineFailure(f"{self.command} was cancelled; its unfinished outputs were removed.", cancelled=True,
                                 log_path=log_path, exit_code=self.returncode)
        if self.error:
            return EngineFailure.from_error_event(self.error, log_path=log_path, exit_code=self.returncode)
        return EngineFailure(f"The engine stopped with exit code {self.returncode} before reporting a result.",
                             "The engine log says why.", details=self.stderr_tail(), log_path=log_path,
                             exit_code=self.returncode)

    def error_text(self) -> tuple[str, str, str]:
        """(message, hint, details) of ``failure()``."""
        failure = self.failure()
        return failure.message, failure.hint, failure.details


class EngineNotReady(Exception):
    """No engine interpreter: the user must set up the engine or point the settings at one."""


class EngineJob:
    def __init__(
        self,
        command: str,
        spec: Optional[dict[str, Any]] = None,
        *,
        python: Optional[Path] = None,
        workspace: Optional[Path] = None,
        secrets: Optional[Mapping[str, str]] = None,
        allow_downloads: bool = False,
        log_dir: Optional[Path] = None,
    ) -> None:
        self.command = command
        self.spec = spec
        self.python = python
        self.workspace = workspace
        self.secrets = dict(secrets or {})
        self.allow_downloads = allow_downloads
        self.log_dir = log_dir
        self.process: Optional[subprocess.Popen] = None

    def _python(self) -> Path:
        python = self.python or engine_runtime.resolve_engine_python()
        if not python or not Path(python).exists():
            raise EngineNotReady(
                "The GeoStudio engine is not set up yet. Open GeoStudio > Settings and click 'Set up engine' "
                f"(downloads {engine_runtime.ENV_SIZE_NOTE}), or point 'Engine Python' at an existing "
                "interpreter that has the engine's packages.")
        return Path(python)

    def run(self, on_event: EventCallback = lambda e: None, is_canceled: CancelCheck = lambda: False) -> JobOutcome:
        outcome = JobOutcome(self.command)
        started = time.monotonic()
        python = self._python()  # raises EngineNotReady before anything is created
        private = Path(tempfile.mkdtemp(prefix="geostudio-job-"))
        args: list[str] = []
        if self.spec is not None:
            spec_file = private / "spec.json"
            spec_file.write_text(json.dumps(self.spec), encoding="utf-8")
            os.chmod(spec_file, 0o600)
            args.append(str(spec_file))
        log_dir = self.log_dir or engine_runtime.user_data_dir() / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        _prune_logs(log_dir)
        outcome.log_path = log_dir / f"engine-{self.command}-{time.strftime('%Y%m%d-%H%M%S')}-{private.name[-8:]}.log"
        cmd = engine_runtime.engine_command(python, self.command, args, self.workspace)
        env = engine_runtime.engine_environ(extra=self.secrets, allow_downloads=self.allow_downloads)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        try:
            with open(outcome.log_path, "w", encoding="utf-8") as log_file:
                popen_kw: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
                    "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                    | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
                self.process = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env,
                    cwd=str(private), **popen_kw)
                reader = threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True)
                reader.start()
                finished_reading = False
                while not finished_reading:
                    if is_canceled() and not outcome.cancelled:
                        outcome.cancelled = True
                        engine_runtime.terminate_group(self.process, CANCEL_GRACE_S)
                    try:
                        line = lines.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if line is None:
                        finished_reading = True
                        continue
                    event = _parse(line)
                    outcome.events.append(event)
                    if is_result(event):
                        outcome.result = event
                    elif is_error(event):
                        outcome.error = event
                    on_event(event)
                outcome.returncode = self.process.wait()
                reader.join(timeout=1)
                self.process.stdout.close()
        finally:
            if self.process and self.process.poll() is None:
                engine_runtime.terminate_group(self.process, CANCEL_GRACE_S)
            shutil.rmtree(private, ignore_errors=True)  # the spec file goes as soon as the job ends
        outcome.seconds = time.monotonic() - started
        if outcome.returncode == EXIT_CANCELLED or (outcome.cancelled and outcome.returncode != 0):
            outcome.cancelled = True
        return outcome


def _pump(stream: Any, lines: "queue.Queue[Optional[str]]") -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    lines.put(None)


def _parse(line: str) -> dict[str, Any]:
    try:
        event = json.loads(line)
        if isinstance(event, dict) and "event" in event:
            return event
    except json.JSONDecodeError:
        pass
    return {"event": EVENT_LOG, "level": "info", "message": line}


def _prune_logs(log_dir: Path, keep: int = 100) -> None:
    """Keep the newest logs. Two jobs starting together prune together: a log the other job removed
    between listing and reading its time is simply gone (it once failed the second job's start)."""
    dated = []
    for path in log_dir.glob("engine-*.log"):
        try:
            dated.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for _mtime, old in sorted(dated)[:-keep]:
        try:
            old.unlink()
        except OSError:
            pass


def run_cli(command: str, spec: Optional[dict[str, Any]] = None, **kwargs: Any) -> JobOutcome:
    """Convenience for scripts: run a job, print its progress to stderr."""
    def show(event: dict[str, Any]) -> None:
        if is_progress(event):
            print(f"  [{event.get('fraction', 0):5.0%}] {event.get('stage')}: {event.get('message')}",
                  file=sys.stderr, flush=True)
        elif is_log(event) and event.get("level") in ("warning", "error"):
            print(f"  {event.get('level')}: {event.get('message')}", file=sys.stderr, flush=True)
    return EngineJob(command, spec, **kwargs).run(show)
