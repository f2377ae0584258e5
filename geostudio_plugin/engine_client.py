"""Run one engine command as a child process and read its JSON-lines events.

Standard library only. ``tasks.EngineTask`` (the QgsTask bridge), the
Processing algorithms and ``scripts/demo.py`` all drive the engine through
``EngineJob``, so every caller gets the same environment cleaning, spec
handling, cancellation and error mapping.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from . import engine_runtime, engine_server_client
from .contract import EVENT_LOG, EXIT_CANCELLED, EngineFailure, is_error, is_log, is_progress, is_result

EventCallback = Callable[[dict[str, Any]], None]
CancelCheck = Callable[[], bool]

log = logging.getLogger(__name__)

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
    cpu_seconds: Optional[float] = None  # the job process's own CPU time, where known (the warm engine's wait4)

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
        warm: Optional[bool] = None,
        idle_s: float = engine_server_client.DEFAULT_IDLE_S,
        max_jobs: int = 0,
    ) -> None:
        self.command = command
        self.spec = spec
        self.python = python
        self.workspace = workspace
        self.secrets = dict(secrets or {})
        self.allow_downloads = allow_downloads
        self.log_dir = log_dir
        self.warm = warm  # None: GEOSTUDIO_WARM_ENGINE decides (on unless "0"); the plugin passes its setting
        self.idle_s = idle_s
        self.max_jobs = max_jobs  # 0: the server's default (1 with a GPU, 2 without)
        self.process: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None  # the job's process (group leader), on either path
        self.path = ""  # "warm" or "process": how the job ran

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
        try:
            server = self._server(python, env, log_dir, is_canceled)
            if server is None and is_canceled():  # cancelled while the warm engine was starting
                outcome.cancelled, outcome.returncode = True, EXIT_CANCELLED
                return self._finish(outcome, started)
            with open(outcome.log_path, "w", encoding="utf-8") as log_file:
                if server is not None and self._run_warm(server, cmd[3:], env, private, log_file, outcome, on_event,
                                                         is_canceled):
                    self.path = "warm"
                elif not (outcome.cancelled and outcome.returncode is not None):
                    self.path = "process"
                    self._run_process(cmd, env, private, log_file, outcome, on_event, is_canceled)
        finally:
            shutil.rmtree(private, ignore_errors=True)  # the spec file goes as soon as the job ends
        return self._finish(outcome, started)

    @staticmethod
    def _finish(outcome: JobOutcome, started: float) -> JobOutcome:
        outcome.seconds = time.monotonic() - started
        if outcome.returncode == EXIT_CANCELLED or (outcome.cancelled and outcome.returncode != 0):
            outcome.cancelled = True
        return outcome

    def _server(self, python: Path, env: dict[str, str], log_dir: Path,
                is_canceled: CancelCheck) -> Optional[engine_server_client.WarmServer]:
        """The warm engine for this job, or None: turned off, not this platform, or it would not start."""
        warm = self.warm if self.warm is not None else engine_server_client.enabled_by_environment()
        if not warm or not engine_server_client.supported():
            return None
        try:
            return engine_server_client.warm_server(python, env, self.secrets, idle_s=self.idle_s,
                                                    max_jobs=self.max_jobs, log_dir=log_dir, is_canceled=is_canceled)
        except (engine_server_client.ServerUnavailable, OSError) as exc:
            log.info("warm engine unavailable, running %s as its own process: %s", self.command, exc)
            return None

    def _run_process(self, cmd: list[str], env: dict[str, str], private: Path, log_file: Any, outcome: JobOutcome,
                     on_event: EventCallback, is_canceled: CancelCheck) -> None:
        """The job as its own process (no warm engine)."""
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        try:
            popen_kw: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {
                "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
            self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, env=env,
                cwd=str(private), **popen_kw)
            self.pid = self.process.pid
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
                _take(outcome, _parse(line), on_event)
            outcome.returncode = self.process.wait()
            reader.join(timeout=1)
            self.process.stdout.close()
        finally:
            if self.process and self.process.poll() is None:
                engine_runtime.terminate_group(self.process, CANCEL_GRACE_S)

    def _run_warm(self, server: engine_server_client.WarmServer, engine_args: list[str], env: dict[str, str],
                  private: Path, log_file: Any, outcome: JobOutcome, on_event: EventCallback,
                  is_canceled: CancelCheck) -> bool:
        """The job as a child forked by the warm engine: the same events, log, exit code and cancel.

        False when the server could not take the job (it died before starting it): the caller then runs
        it as its own process."""
        try:
            sock = server.connect()
        except engine_server_client.ServerUnavailable:
            return False
        read_fd, write_fd = os.pipe()
        request = {"op": "run", "argv": engine_args, "env": env, "cwd": str(private)}
        try:
            try:
                socket.send_fds(sock, [(json.dumps(request) + "\n").encode()], [write_fd, log_file.fileno()])
            except OSError:
                return False
            finally:
                os.close(write_fd)  # the child holds it now; ours would keep the pipe from ever ending
            sock.setblocking(False)
            pid: Optional[int] = None
            control, events = b"", b""
            pipe_open, answered = True, False
            kill_at: Optional[float] = None
            while pipe_open or not answered:
                if is_canceled() and not outcome.cancelled:
                    outcome.cancelled = True
                    if pid is None:  # still queued: closing the connection takes it off the queue
                        outcome.returncode = EXIT_CANCELLED
                        return True
                    _signal_group(pid, signal.SIGTERM)
                    kill_at = time.monotonic() + CANCEL_GRACE_S
                if kill_at is not None and pid is not None and time.monotonic() > kill_at:
                    _signal_group(pid, signal.SIGKILL)  # children may outlive the leader: the whole group
                    kill_at = None
                watched = ([read_fd] if pipe_open else []) + ([sock] if not answered else [])
                readable, _, _ = select.select(watched, [], [], 0.05)
                if read_fd in readable:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        pipe_open = False
                    events += chunk
                    *lines, events = events.split(b"\n")
                    for line in lines:
                        _take(outcome, _parse(line.decode("utf-8", errors="replace").rstrip("\r")), on_event)
                if sock in readable:
                    chunk = sock.recv(65536)
                    if not chunk:  # the server died: its job got SIGTERM from the kernel (PDEATHSIG)
                        answered = True
                        if pid is None:
                            return False
                        log_file.write("\nThe warm engine server stopped while this job ran.\n")
                        log_file.flush()
                        outcome.returncode = -signal.SIGTERM  # the kernel's PDEATHSIG; the job cancels itself
                        _signal_group(pid, signal.SIGTERM)
                        kill_at = kill_at or time.monotonic() + CANCEL_GRACE_S
                    control += chunk
                    while b"\n" in control:
                        line, control = control.split(b"\n", 1)
                        message = json.loads(line)
                        if "pid" in message:
                            pid = int(message["pid"])
                            self.pid = pid
                        elif "returncode" in message:
                            outcome.returncode = int(message["returncode"])
                            outcome.cpu_seconds = message.get("cpu_s")
                            answered = True
                        elif "error" in message and pid is None:
                            log.info("warm engine refused %s: %s", self.command, message["error"])
                            return False
            if events.strip():
                _take(outcome, _parse(events.decode("utf-8", errors="replace")), on_event)
            return True
        finally:
            os.close(read_fd)
            sock.close()


def _pump(stream: Any, lines: "queue.Queue[Optional[str]]") -> None:
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    lines.put(None)


def _take(outcome: JobOutcome, event: dict[str, Any], on_event: EventCallback) -> None:
    outcome.events.append(event)
    if is_result(event):
        outcome.result = event
    elif is_error(event):
        outcome.error = event
    on_event(event)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
