"""The plugin's side of the warm engine (``engine/server.py``): start it, keep it, run jobs through it.

Standard library only. ``engine_client.EngineJob`` asks ``warm_server`` for a server and, when there is
none (not Linux, turned off, or it failed to start), runs the job as its own process as before; both paths
give the same ``JobOutcome``, events and cancel.

One server per process (QGIS session) and engine: its key is the interpreter, the plugin folder the engine
is imported from, the lock's hash and the job environment minus the job's own secrets and download switch.
A different key (another engine, a new lock, a changed setting) stops the old server and starts a new one;
a server that died is replaced on the next job. The server reads end-of-file on its stdin when this
process ends, however it ends, and stops; ``stop()`` (plugin unload, the Settings' Stop) ends it at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from secrets import token_hex
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from . import engine_runtime

SERVER_MODULE = "geostudio_plugin.engine.server"
START_TIMEOUT_S = 180.0  # the imports: 10-20 s on two cores, more on a cold disk
DEFAULT_IDLE_S = 15 * 60
# Variables that differ per job and that the forked child sets for itself (see server._refresh_env_readers).
PER_JOB_ENV = ("HF_HUB_OFFLINE",)
# Variables that change under a running session without meaning anything to the engine's imports.
VOLATILE_ENV = ("PYTEST_CURRENT_TEST",)


class ServerUnavailable(Exception):
    """No warm server for this job; the caller runs it as a separate process."""


def supported() -> bool:
    """A fork server needs fork, SCM_RIGHTS and /proc: Linux. macOS forks badly (its frameworks), Windows not at all."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and hasattr(socket, "send_fds")


def preload_enabled() -> bool:
    """GEOSTUDIO_WARM_PRELOAD=0 starts a server that imports nothing heavy (its jobs import for themselves):
    for tests of the channel and lifecycle, where waiting for torch would prove nothing."""
    return os.environ.get("GEOSTUDIO_WARM_PRELOAD", "1") != "0"


def enabled_by_environment() -> bool:
    """Scripts (demo, bench) use the warm engine unless GEOSTUDIO_WARM_ENGINE=0; the plugin asks its settings."""
    return os.environ.get("GEOSTUDIO_WARM_ENGINE", "1") != "0"


def runtime_dir() -> Path:
    """The private folder of the sockets: $XDG_RUNTIME_DIR/geostudio, else the user data folder's run/."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) / "geostudio" if xdg and Path(xdg).is_dir() else engine_runtime.user_data_dir() / "run"
    if len(str(base)) > 60:  # a Unix socket path holds at most 107 bytes
        base = Path(tempfile.gettempdir()) / f"geostudio-{os.getuid()}"
    return base


def server_key(python: Path, env: Mapping[str, str], secrets: Mapping[str, str], options: tuple = ()) -> str:
    shared = {k: v for k, v in env.items() if k not in secrets and k not in PER_JOB_ENV and k not in VOLATILE_ENV}
    try:
        lock = engine_runtime.lock_hash()
    except engine_runtime.EngineSetupError:
        lock = "no-lock"
    text = json.dumps([str(python), str(engine_runtime.plugin_parent()), lock, preload_enabled(), list(options),
                       sorted(shared.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class WarmServer:
    """One running server: its process, socket and key."""

    def __init__(self, python: Path, env: Mapping[str, str], key: str, idle_s: float, max_jobs: int,
                 log_dir: Path) -> None:
        self.key = key
        self.python = python
        folder = runtime_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        # unique per start: a stopping server removes its own socket, never its successor's
        self.socket_path = folder / f"engine-{key}-{os.getpid()}-{token_hex(3)}.sock"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "warm-engine-server.log"  # not engine-*.log: job logs are pruned by that name
        cmd = [str(python), "-m", SERVER_MODULE, "--socket", str(self.socket_path), "--idle", str(idle_s),
               "--max-jobs", str(max_jobs)] + ([] if preload_enabled() else ["--no-preload"])
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(cmd)}\n")
            log.flush()
            # stdin stays open in this process only: its end of file tells the server we are gone.
            self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            env=dict(env), cwd=str(folder), start_new_session=True)
        self.ready: Optional[dict[str, Any]] = None
        self.started = time.monotonic()

    def wait_ready(self, is_canceled: Any = lambda: False, timeout: float = START_TIMEOUT_S) -> None:
        """Until the server says ready (its imports done). Polls, so a cancel is seen within 0.1 s."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        buffer = b""
        fd = self.process.stdout.fileno()
        while time.monotonic() < deadline:
            if is_canceled():
                raise ServerUnavailable("cancelled while the engine server was starting")
            readable, _, _ = select.select([fd], [], [], 0.1)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise ServerUnavailable(f"the engine server ended while starting (see {self.log_path})")
            buffer += chunk
            if b"\n" in buffer:
                try:
                    message = json.loads(buffer.split(b"\n", 1)[0])
                except ValueError:
                    message = {}
                if message.get("event") != "ready":
                    raise ServerUnavailable(f"the engine server did not start: {message.get('error', message)}")
                self.ready = message
                self.process.stdout.close()
                return
        raise ServerUnavailable(f"the engine server did not start within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process.poll() is None and self.socket_path.exists()

    def connect(self, timeout: Optional[float] = 10.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.socket_path))
        except OSError as exc:
            sock.close()
            raise ServerUnavailable(f"cannot reach the engine server: {exc}") from None
        return sock

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """One question, one answer (status, stop)."""
        with self.connect(timeout) as sock:
            sock.sendall((json.dumps(message) + "\n").encode())
            return read_message(sock) or {}

    def status(self) -> dict[str, Any]:
        return self.request({"op": "status"})

    def stop(self, timeout: float = 10.0) -> None:
        """End of file on its stdin: the server stops its jobs and leaves. Waits up to ``timeout`` (0: not at
        all), then stops it outright."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        if self.process.poll() is not None:
            return
        if timeout <= 0:  # reaped when it ends, by a thread that only waits
            threading.Thread(target=self.process.wait, name="geostudio-engine-reaper", daemon=True).start()
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            engine_runtime.terminate_group(self.process, 3.0)


def read_message(sock: socket.socket) -> Optional[dict[str, Any]]:
    """One JSON line from the server (None at end of file)."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data.split(b"\n", 1)[0])


_lock = threading.Lock()  # guards _server and _starting; held for moments only (the GUI thread takes it)
_start_lock = threading.Lock()  # one start at a time: two jobs starting together share one server
_server: Optional[WarmServer] = None
_starting: Optional[WarmServer] = None


def warm_server(python: Path, env: Mapping[str, str], secrets: Mapping[str, str], *, idle_s: float = DEFAULT_IDLE_S,
                max_jobs: int = 0, log_dir: Optional[Path] = None, is_canceled: Any = lambda: False) -> WarmServer:
    """The running server for this engine and environment, started (or restarted) when needed. Called from
    worker threads (a task's run, a script): it may wait for the server's imports.

    Raises ServerUnavailable when none can be had; the caller then runs the job as its own process."""
    global _server, _starting
    if not supported():
        raise ServerUnavailable("this platform has no fork server")
    key = server_key(python, env, secrets, (idle_s, max_jobs))
    base_env = {k: v for k, v in env.items() if k not in secrets}
    with _start_lock:
        with _lock:
            old, server = _server, _server
            if server is not None and (server.key != key or not server.alive()):
                _server = server = None
        if server is not None:
            return server
        if old is not None:
            old.stop()
        server = WarmServer(python, base_env, key, idle_s, max_jobs, log_dir or engine_runtime.user_data_dir() / "logs")
        with _lock:
            _starting = server
        try:
            server.wait_ready(is_canceled)
        except (ServerUnavailable, OSError):
            server.stop(timeout=3.0)
            raise
        finally:
            with _lock:
                _starting = None
        with _lock:
            _server = server
        return server


def current() -> Optional[WarmServer]:
    """The server of this session, if one is running (for the Settings' state)."""
    server = _server
    return server if server is not None and server.alive() else None


def stop(wait: bool = True) -> None:
    """Stop this session's server (plugin unload, Settings > Stop); its running jobs are cancelled by it.
    ``wait=False`` (the GUI thread) only tells it to go: it stops its jobs and ends by itself."""
    global _server
    with _lock:
        servers = [s for s in (_server, _starting) if s is not None]
        _server = None
    for server in servers:
        server.stop(timeout=10.0 if wait else 0.0)


def state() -> dict[str, Any]:
    """running, pid, rss_mb, jobs_served, running_jobs: what Settings shows."""
    server = current()
    if server is None:
        return {"running": False}
    try:
        info = server.status()
    except (ServerUnavailable, OSError, ValueError):
        return {"running": False}
    return {"running": True, "pid": info.get("pid"), "rss_mb": round(info.get("rss_kb", 0) / 1024, 1),
            "jobs_served": info.get("jobs_served", 0), "running_jobs": info.get("running", 0),
            "queued_jobs": info.get("queued", 0)}
