"""The warm engine: a fork server that imports the heavy libraries once and runs each job in a forked child.

``python -m geostudio_plugin.engine.server --socket PATH [--idle S] [--max-jobs N]``

Started by the plugin (``geostudio_plugin.engine_server_client``), one per QGIS session and engine
environment. It imports torch, Lightning, TerraTorch and rasterio (not Terrakit: see ``preload``), binds a
Unix socket in a private folder (0700, the socket 0600, and the peer's uid checked with SO_PEERCRED), prints
one ``ready`` line on stdout, then serves. A request is one JSON line sent with two file descriptors (SCM_RIGHTS): the
job's stdout pipe and its log file. The server forks; the child makes its own session (process group),
puts the two descriptors on 1 and 2, takes the job's environment and folder and runs the engine's
``main`` exactly as ``python -m geostudio_plugin.engine`` would. The server answers ``{"pid": N}`` when the
job starts and ``{"returncode": R, "cpu_s": C, "max_rss_kb": M}`` when it ends (negative R: the signal that
killed it, as Popen says; C and M from wait4, the job's own CPU time and peak memory).
The client cancels as it always did: SIGTERM to the job's group, SIGKILL after the grace.

Fork safety. A CUDA context and running threads do not survive a fork, so the server never has either:
* it is single-threaded by construction: one ``selectors`` loop, no ``threading``, no executor;
* the libraries that start native threads at import are told not to before they load: OpenBLAS
  (``OPENBLAS_NUM_THREADS=1``; the child raises it back with threadpoolctl) and Arrow's jemalloc
  background thread (``JE_ARROW_MALLOC_CONF=background_thread:false``); torch's OpenMP pool starts on the
  first tensor operation, which only children run;
* nothing here touches ``torch.cuda`` beyond ``is_initialized()``; the GPU count comes from
  ``/proc/driver/nvidia/gpus`` (no driver call);
* ``assert_fork_safe`` checks all three (``threading.active_count() == 1``, one entry in
  ``/proc/self/task``, ``torch.cuda.is_initialized()`` False) after the imports and before every fork; a
  failure refuses to serve (the client then runs jobs as separate processes).

Lifecycle: the server ends when its stdin reaches end of file (the plugin, or QGIS, is gone), when its
parent changes (``getppid``; PR_SET_PDEATHSIG is not used for the server because it fires when the
*thread* that started it ends, and QGIS starts it from a task thread), after ``--idle`` seconds without a
job, on ``{"op": "stop"}`` or SIGTERM. It stops its running jobs' groups (TERM, then KILL) on the way out;
each job child also has PR_SET_PDEATHSIG so it ends if the server is killed outright.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

READY = "ready"
CANCEL_GRACE_S = 3.0
MAX_REQUEST_BYTES = 1 << 20
PRELOAD = ("numpy", "rasterio", "torch", "lightning", "terratorch")  # not terrakit: see preload()
PRELOAD_LATE = ("rasterio.shutil", "torch.utils.serialization", "terratorch.tasks.tiled_inference")
# Read by native libraries when they load: set before the imports so nothing starts a thread (see above).
_NO_THREADS_ENV = {"OPENBLAS_NUM_THREADS": "1", "JE_ARROW_MALLOC_CONF": "background_thread:false"}
_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------ fork safety


def task_count() -> int:
    """Native threads of this process (the interpreter's own included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def fork_unsafe_reasons() -> list[str]:
    import threading

    reasons = []
    if threading.active_count() != 1:
        reasons.append(f"{threading.active_count()} Python threads")
    if task_count() != 1:
        reasons.append(f"{task_count()} native threads")
    if cuda_initialized():
        reasons.append("CUDA is initialised")
    return reasons


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import the heavy libraries (the 10-15 s every job used to pay); the names that failed. Not Terrakit:
    importing it rewires logging and GDAL's settings for the whole process, which a job that never uses a
    connector must not inherit (a connector job imports it itself, about 1 s)."""
    import importlib

    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional library only makes the first job slower
            failed.append(name)
    from . import __main__  # noqa: F401 - the entry point every job runs
    from .commands import COMMANDS

    for entry in COMMANDS.values():  # the engine's own modules (they import their heavy parts lazily)
        try:
            entry.spec_model()
            entry.command_function()
        except Exception:  # noqa: BLE001 - the job itself reports a broken module
            pass
    for name in PRELOAD_LATE:  # what an inference still imported in a child (measured: sys.modules before/after)
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001
            pass
    return failed


def gpu_count() -> int:
    """GPUs the NVIDIA driver lists, read from /proc so the server never initialises CUDA."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def default_max_jobs() -> int:
    return 1 if gpu_count() else 2


# ------------------------------------------------------------------- the channel


def private_folder(path: str) -> None:
    """Create (or check) the socket's folder: ours, and closed to everyone else (0700)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SystemExit(f"{path} is not a folder owned by this user; refusing to put the engine's socket there")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def listen(path: str) -> socket.socket:
    private_folder(os.path.dirname(path))
    if os.path.exists(path):
        os.unlink(path)  # a socket left by a server that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.setblocking(True)
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the client went away; the job's own outcome is in its pipe and log


def rss_kb(pid: int | str = "self") -> int:
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------- jobs


@dataclass
class Job:
    conn: socket.socket
    request: dict[str, Any]
    fds: list[int]
    pid: Optional[int] = None
    started: float = field(default_factory=time.monotonic)

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def _set_pdeathsig(sig: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def _refresh_env_readers() -> None:
    """Settings libraries read from the environment when imported, read again for this job's environment."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = hub._is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))
    if "OPENBLAS_NUM_THREADS" not in os.environ:  # the server held BLAS at one thread; the job gets its default
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=os.cpu_count() or 1, user_api="blas")
        except Exception:  # noqa: BLE001 - fewer BLAS threads is slower, never wrong
            pass
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()  # a spawned job started from fresh entropy; a forked one must not share the server's


class ImportState:
    """What the imports changed that a job must see as a spawned engine would: variables the libraries set
    in os.environ (LD_LIBRARY_PATH, KMP_*, PYTORCH_*), and the root logger as it was before them (a library
    that configures logging at import would otherwise pre-empt the engine's own logging setup)."""

    def __init__(self) -> None:
        import logging

        self.environ = dict(os.environ)
        root = logging.getLogger()
        self.root_handlers, self.root_level = list(root.handlers), root.level
        self.added_environ: dict[str, str] = {}

    def after_imports(self) -> None:
        self.added_environ = {k: v for k, v in os.environ.items()
                              if self.environ.get(k) != v and k not in _NO_THREADS_ENV}

    def apply(self, job_environ: dict[str, str]) -> None:
        import logging

        os.environ.clear()
        os.environ.update({**self.added_environ, **job_environ})  # the job's own values win
        root = logging.getLogger()
        root.handlers[:] = self.root_handlers
        root.setLevel(self.root_level)


IMPORT_STATE: Optional[ImportState] = None
_server_streams: list[Any] = []  # the server's stdio objects, kept alive in a child: freed, they would close 0-2


def run_child(job: Job, ready_fd: int, server_pid: int) -> None:
    """In the forked child (the server's own descriptors already closed): become the job, run it, and never
    return into the server's loop."""
    code = 1
    try:
        os.setsid()  # its own session and process group: the client's killpg(pid) reaches the job and only it
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)  # a TERM before main() installs its own handler ends the job
        _set_pdeathsig(signal.SIGTERM)  # the server killed outright: the job cancels itself (rollback) and ends
        if os.getppid() != server_pid:  # the server died before the line above: nobody waits for this job
            os._exit(1)
        os.write(ready_fd, b"x")  # only now may the client learn the pid and signal the group
        os.close(ready_fd)
        _server_streams.extend([sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__])
        out_fd, err_fd = job.fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        for fd in (null, out_fd, err_fd):
            os.close(fd)
        sys.stdin = open(0, "r", encoding="utf-8", closefd=False)
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", buffering=1, closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", buffering=1, closefd=False)
        request = job.request
        job_environ = {str(k): str(v) for k, v in request.get("env", {}).items()}
        if IMPORT_STATE is not None:
            IMPORT_STATE.apply(job_environ)
        else:
            os.environ.clear()
            os.environ.update(job_environ)
        os.chdir(request.get("cwd") or "/")
        _refresh_env_readers()
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["geostudio_plugin.engine", *argv]
        from .__main__ import main
        from .wire import EXIT_CANCELLED

        code = main(argv)
        if code != EXIT_CANCELLED:  # as `sys.exit` would: the libraries' exit handlers (log flushes) run
            import atexit

            atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001 - the child must end here whatever happened
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


class Server:
    def __init__(self, path: str, idle_s: float, max_jobs: int) -> None:
        self.path = path
        self.idle_s = idle_s
        self.max_jobs = max(1, max_jobs)
        self.parent = os.getppid()
        self.pid = os.getpid()
        self.kill_at: dict[int, float] = {}  # jobs whose client went away: SIGKILL at this time if still there
        self.selector = selectors.DefaultSelector()
        self.listener = listen(path)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "stdin")
        self.buffers: dict[socket.socket, bytes] = {}
        self.pending_fds: dict[socket.socket, list[int]] = {}
        self.running: dict[int, Job] = {}
        self.queue: list[Job] = []
        self.served = 0
        self.last_activity = time.monotonic()
        self.stopping = False

    # -- the loop
    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        while not self.stopping:
            for key, _mask in self.selector.select(timeout=0.2):
                if key.data == "accept":
                    self._accept()
                elif key.data == "stdin":
                    if not os.read(sys.stdin.fileno(), 4096):
                        self.stopping = True  # the plugin (QGIS) is gone
                else:
                    self._readable(key.fileobj)  # type: ignore[arg-type]
            self._reap()
            for pid, when in list(self.kill_at.items()):
                if pid not in self.running:
                    del self.kill_at[pid]
                elif time.monotonic() > when:
                    _kill_group(pid, signal.SIGKILL)
                    del self.kill_at[pid]
            self._start_queued()
            if os.getppid() != self.parent:
                self.stopping = True
            if not self.running and not self.queue and time.monotonic() - self.last_activity > self.idle_s:
                self.stopping = True
        self.shutdown()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        if peer_uid(conn) != os.getuid():  # the folder's mode already keeps others out; this is the second lock
            _send(conn, {"error": "refused: the engine server serves only its own user"})
            conn.close()
            return
        conn.setblocking(False)
        self.buffers[conn] = b""
        self.pending_fds[conn] = []
        self.selector.register(conn, selectors.EVENT_READ, "conn")
        self.last_activity = time.monotonic()

    def _job_of(self, conn: socket.socket) -> Optional[Job]:
        for job in [*self.running.values(), *self.queue]:
            if job.conn is conn:
                return job
        return None

    def _readable(self, conn: socket.socket) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        job = self._job_of(conn)
        if not data:
            for fd in fds:
                os.close(fd)
            self._client_gone(conn, job)
            return
        if job is not None:  # nothing more is expected from a job's client
            for fd in fds:
                os.close(fd)
            return
        self.pending_fds[conn].extend(fds)
        self.buffers[conn] += data
        if b"\n" not in self.buffers[conn]:
            if len(self.buffers[conn]) > MAX_REQUEST_BYTES:
                self._client_gone(conn, None)
            return
        line = self.buffers[conn].split(b"\n", 1)[0]
        try:
            request = json.loads(line)
        except ValueError:
            request = {}
        self._handle(conn, request if isinstance(request, dict) else {})

    def _handle(self, conn: socket.socket, request: dict[str, Any]) -> None:
        op = request.get("op")
        fds = self.pending_fds.pop(conn, [])
        if op == "status":
            _send(conn, self.status())
        elif op == "stop":
            _send(conn, {"stopping": True})
            self.stopping = True
        elif op == "run" and len(fds) == 2 and isinstance(request.get("argv"), list):
            job = Job(conn, request, fds)
            if self.queue or len(self.running) >= self.max_jobs:
                self._queued_event(job, len(self.queue) + len(self.running))
            self.queue.append(job)
            self._start_queued()
            return
        else:
            for fd in fds:
                os.close(fd)
            _send(conn, {"error": f"bad request: {op!r} (a run needs argv and two descriptors)"})
        self._forget(conn)

    def _queued_event(self, job: Job, ahead: int) -> None:
        event = {"event": "progress", "stage": "queued", "fraction": 0.0,
                 "message": f"queued: {ahead} job{'s' if ahead != 1 else ''} ahead "
                            f"(the engine runs {self.max_jobs} at once)"}
        try:
            os.write(job.fds[0], (json.dumps(event) + "\n").encode())
        except OSError:
            pass

    def _start_queued(self) -> None:
        while self.queue and len(self.running) < self.max_jobs:
            self._fork(self.queue.pop(0))

    def _fork(self, job: Job) -> None:
        reasons = fork_unsafe_reasons()
        if reasons:  # never fork a process the child could not trust; the client falls back to a process
            _send(job.conn, {"error": "the server cannot fork safely: " + ", ".join(reasons)})
            job.close_fds()
            self._forget(job.conn)
            self.stopping = True
            return
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            self._close_in_child(job, ready_r)
            run_child(job, ready_w, self.pid)
        os.close(ready_w)
        os.read(ready_r, 1)  # the child has its own group before anyone may signal it
        os.close(ready_r)
        job.close_fds()  # the child holds them now; ours would keep the client's pipe from ending
        job.pid = pid
        self.running[pid] = job
        self.served += 1
        self.last_activity = time.monotonic()
        _send(job.conn, {"pid": pid})
        job.conn.setblocking(False)

    def _close_in_child(self, job: Job, ready_r: int) -> None:
        """A job child keeps only its own two descriptors: not the listener, other clients or other jobs' pipes
        (a pipe held open by a sibling would never reach end of file)."""
        os.close(ready_r)
        self.listener.close()
        self.selector.close()
        for conn in list(self.buffers):
            conn.close()
        for waiting in self.queue:
            if waiting is not job:
                waiting.close_fds()

    def _reap(self) -> None:
        while self.running:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.running.pop(pid, None)
            if job is None:
                continue
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            _send(job.conn, {"returncode": code, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                             "max_rss_kb": usage.ru_maxrss})
            self._forget(job.conn)
            self.last_activity = time.monotonic()

    def _client_gone(self, conn: socket.socket, job: Optional[Job]) -> None:
        """The client closed its end: a queued job is dropped, a running one stopped (nobody reads it)."""
        if job is not None and job in self.queue:
            self.queue.remove(job)
            job.close_fds()
        elif job is not None and job.pid is not None:
            _kill_group(job.pid, signal.SIGTERM)
            self.kill_at.setdefault(job.pid, time.monotonic() + CANCEL_GRACE_S)
            try:
                self.selector.unregister(conn)  # end of file stays readable: stop watching it
            except (KeyError, ValueError):
                pass
            return  # reaped later; its connection is forgotten then
        self._forget(conn)

    def _forget(self, conn: socket.socket) -> None:
        for fd in self.pending_fds.pop(conn, []):
            os.close(fd)
        self.buffers.pop(conn, None)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "rss_kb": rss_kb(), "jobs_served": self.served, "running": len(self.running),
                "queued": len(self.queue), "max_jobs": self.max_jobs, "idle_s": self.idle_s,
                "threads": task_count(), "cuda_initialized": cuda_initialized()}

    def shutdown(self) -> None:
        for job in self.queue:
            job.close_fds()
            _send(job.conn, {"error": "the engine server stopped before the job started"})
        self.queue.clear()
        for pid in list(self.running):
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while self.running and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.running):
            _kill_group(pid, signal.SIGKILL)
        while self.running:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self._reap()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self.listener.close()


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="geostudio-engine-server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True, help="Unix socket path (its folder is made private)")
    parser.add_argument("--idle", type=float, default=900.0, help="seconds without a job before the server ends")
    parser.add_argument("--max-jobs", type=int, default=0, help="jobs at once (0: 1 with a GPU, 2 without)")
    parser.add_argument("--no-preload", action="store_true", help="import nothing heavy (tests of the channel)")
    args = parser.parse_args(argv)
    global IMPORT_STATE
    IMPORT_STATE = ImportState()
    for name, value in _NO_THREADS_ENV.items():
        os.environ.setdefault(name, value)
    started = time.monotonic()
    failed = [] if args.no_preload else preload()
    IMPORT_STATE.after_imports()
    reasons = fork_unsafe_reasons()
    if reasons:
        print(json.dumps({"error": "not fork-safe after the imports: " + ", ".join(reasons)}), flush=True)
        return 1
    server = Server(args.socket, args.idle, args.max_jobs or default_max_jobs())
    print(json.dumps({"event": READY, "pid": os.getpid(), "seconds": round(time.monotonic() - started, 1),
                      "not_preloaded": failed, "max_jobs": server.max_jobs}), flush=True)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
