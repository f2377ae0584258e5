"""The warm engine (engine/server.py, driven through the plugin's EngineJob): latency, isolation, cancel, faults,
resources, the channel's privacy and the fork-safety promise. Real jobs on the session's tiny model; nothing
is mocked. The tests that only need the channel and lifecycle use a server that imports nothing heavy
(GEOSTUDIO_WARM_PRELOAD=0), so they cost a second instead of the imports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geostudio_plugin import engine_server_client as warm
from geostudio_plugin.engine_client import EngineJob

from conftest import HOLDOUT_IMAGE, leftovers, tune_payload

pytestmark = pytest.mark.skipif(not warm.supported(), reason="the fork server runs on Linux")

PYTHON = Path(sys.executable)


@pytest.fixture(scope="module", autouse=True)
def _one_server_per_module():
    warm.stop()
    yield
    warm.stop()


def job(command: str, spec: Any, workspace: Path, log_dir: Path, **kwargs: Any) -> EngineJob:
    return EngineJob(command, spec, python=PYTHON, workspace=workspace, log_dir=log_dir, warm=True, **kwargs)


def infer_spec(trained: dict[str, Any]) -> dict[str, Any]:
    return {"fine_tuning_id": trained["tune"]["tune_id"], "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]},
            "device": "cpu"}


def group_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def server_pid() -> int:
    server = warm.current()
    assert server is not None, "no warm server is running"
    return server.process.pid


def settled_fd_count(pid: int) -> int:
    """The server's open descriptors once the connection of a status question just asked has closed."""
    time.sleep(0.5)
    return len(os.listdir(f"/proc/{pid}/fd"))


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


# ------------------------------------------------------------------------------------------ the preloaded server


def test_second_identical_inference_is_under_two_seconds(trained, tmp_path):
    """The first job pays the server's imports once; the second is a fork away from running."""
    logs = tmp_path / "logs"
    first = job("infer", infer_spec(trained), trained["workspace"], logs)
    one = first.run()
    assert one.ok and first.path == "warm", one.failure()
    second = job("infer", infer_spec(trained), trained["workspace"], logs)
    two = second.run()
    assert two.ok and second.path == "warm", two.failure()
    # Everything but the model's own arithmetic on the chip (fork, spec, model load, reading, COG writing,
    # events, log) takes under 2 s; a process per job spends 10-40 s there (imports). The arithmetic itself
    # (predict_s: 9 tiles of 224 px through ResNet-18 on 2 shared cores, 1-12 s here depending on the load of
    # the machine) is the same on both paths and no server can take it away.
    # The bound is 2 s on an idle machine, stretched by how oversubscribed the cores are now (other jobs of a
    # shared 2-core machine ran this at a load of 8: 2.1 s around the model, 0.5-1 s when it is quiet).
    timings = json.loads((Path(two.result["outputs"]["inference_dir"]) / "inference.json").read_text())["timings"]
    stretch = max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    around_the_model = two.seconds - timings["predict_s"]
    assert around_the_model < 2.0 * stretch, \
        f"the second inference took {two.seconds:.2f} s end to end, {timings}, load stretch {stretch:.1f}"
    assert timings["load_model_s"] < 2.0 * stretch  # the libraries were already there
    assert second.pid != first.pid  # each job is its own child
    with rasterio.open(one.result["outputs"]["predictions"][0]) as a, \
            rasterio.open(two.result["outputs"]["predictions"][0]) as b:
        assert (a.width, a.height) == (512, 512) and a.crs == b.crs and a.transform == b.transform
        assert np.array_equal(a.read(1), b.read(1))  # the same model on the same chip: the same map


def test_the_server_has_no_threads_and_no_cuda_before_it_forks(trained):
    pid = server_pid()
    status = warm.current().status()
    assert status["threads"] == 1 and not status["cuda_initialized"]
    assert len(os.listdir(f"/proc/{pid}/task")) == 1  # seen from outside too, after jobs ran
    assert status["jobs_served"] >= 2
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"OPENBLAS_NUM_THREADS=1" not in environ  # set by the server for itself; the jobs get their own


def test_cancel_mid_training_while_another_job_runs(trained, tmp_path):
    workspace = trained["workspace"]
    tunes_before = sorted(p.name for p in (workspace / "tunes").iterdir())
    spec = tune_payload(trained["dataset"]["dataset_id"], max_epochs=3, name="cancelled-in-warm")
    training = job("tune", spec, workspace, tmp_path / "logs")
    cancel = threading.Event()
    outcome: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        if event.get("event") == "metric":  # training has started
            cancel.set()

    runner = threading.Thread(target=lambda: outcome.update(tune=training.run(on_event, cancel.is_set)))
    runner.start()
    assert cancel.wait(240), "training never reported a metric"
    cancelled_at = time.monotonic()
    pgid = training.pid
    other = job("infer", infer_spec(trained), workspace, tmp_path / "logs").run()
    assert group_gone(pgid, max(0.5, 5.0 - (time.monotonic() - cancelled_at))), "the cancelled job's group lives on"
    runner.join(60)
    tune = outcome["tune"]
    assert tune.cancelled and tune.returncode == 130, tune.stderr_tail()
    assert tune.failure().cancelled
    assert other.ok, other.failure()
    assert warm.current() is not None and warm.current().status()["running"] == 0
    assert leftovers(workspace) == []  # nothing half-written in the workspace's scratch
    after = sorted(p.name for p in (workspace / "tunes").iterdir())
    kept = [json.loads((workspace / "tunes" / n / "tune.json").read_text()) for n in after if n not in tunes_before]
    assert all(r["status"] == "Cancelled" for r in kept)  # at most the resumable checkpoint, said so


def test_a_job_killed_from_outside_is_reported_with_its_log(trained, tmp_path):
    server = server_pid()
    spec = tune_payload(trained["dataset"]["dataset_id"], max_epochs=3, name="killed-in-warm")
    victim = job("tune", spec, trained["workspace"], tmp_path / "logs")
    killed, logged = [], []

    def on_event(event: dict[str, Any]) -> None:
        # Training has begun (the tune's first log event is followed by Lightning's model summary on stderr).
        if not killed and logged and victim.pid:
            os.kill(victim.pid, signal.SIGKILL)  # as the out-of-memory killer would
            killed.append(victim.pid)
        if event.get("event") == "log":
            logged.append(event["message"])

    outcome = victim.run(on_event)
    assert killed and outcome.returncode == -9 and not outcome.ok and not outcome.cancelled
    failure = outcome.failure()
    assert "exit code -9" in failure.message and failure.log_path == str(outcome.log_path)
    assert failure.details and failure.details == outcome.stderr_tail()  # the job's own stderr, as written
    assert "Total params" in outcome.log_path.read_text()  # Lightning's model summary, written before the kill
    assert server_pid() == server and warm.current().status()["pid"] == server  # the server lives
    assert zombies_of(server) == []


def test_fifty_small_jobs_keep_the_server_flat(tmp_path):
    server = warm.current()
    assert server is not None
    pid = server.process.pid
    workspace = tmp_path / "ws"
    job("list", None, workspace, tmp_path / "logs").run()  # the first list job imports what list needs
    rss_before = warm.current().status()["rss_kb"]
    fds_before = settled_fd_count(pid)
    failures: list[str] = []

    def worker(count: int) -> None:
        for _ in range(count):
            outcome = job("list", None, workspace, tmp_path / "logs").run()
            if not outcome.ok:
                failures.append(outcome.failure().message)

    threads = [threading.Thread(target=worker, args=(25,)) for _ in range(2)]  # two at a time: the server's limit
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert failures == []
    status = warm.current().status()
    assert status["pid"] == pid and status["running"] == 0
    growth_mb = (status["rss_kb"] - rss_before) / 1024
    assert growth_mb < 50, f"the server grew {growth_mb:.1f} MB over 50 jobs"
    assert settled_fd_count(pid) <= fds_before
    assert zombies_of(pid) == []


def test_nothing_listens_on_tcp_and_the_channel_is_private():
    pid = server_pid()
    server = warm.current()
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    assert inodes  # the Unix socket is there
    for table in ("/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"):
        rows = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        assert not inodes & {row.split()[9] for row in rows}, f"the server has a socket in {table}"
    folder = server.socket_path.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(server.socket_path.stat().st_mode)


def _connect_as_nobody(path: Path) -> str:
    """Fork, become `nobody`, try the socket; what happened, as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(str(path))
                try:  # a refused peer is told at once; an accepted one would be waited for (the timeout)
                    answer = sock.recv(4096).decode() or "closed"
                except socket.timeout:
                    answer = "accepted"
        except OSError as exc:
            answer = f"{type(exc).__name__}"
        os.write(write_end, answer.encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as text:
        return text.read()


@pytest.mark.skipif(os.getuid() != 0, reason="becoming another user needs root")
def test_another_user_cannot_use_the_server(tmp_path):
    if warm.current() is None:  # run alone
        assert job("list", None, tmp_path / "ws", tmp_path / "logs").run().ok
    server = warm.current()
    assert _connect_as_nobody(server.socket_path) == "PermissionError"  # the 0700 folder
    assert warm.current().status()["pid"] == server.process.pid
    # The second lock, the server's own uid check (SO_PEERCRED): a server whose socket the file system would let
    # `nobody` reach (a folder every user may cross, the socket 0666, as only a mistake or an attacker would set
    # them) still refuses it.
    open_folder = Path(tempfile.mkdtemp(prefix="geostudio-peercred-"))
    socket_path = open_folder / "run" / "engine.sock"
    proc = subprocess.Popen([sys.executable, "-m", "geostudio_plugin.engine.server", "--socket", str(socket_path),
                             "--no-preload"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
        os.chmod(open_folder, 0o711)
        os.chmod(socket_path.parent, 0o711)
        os.chmod(socket_path, 0o666)
        answer = _connect_as_nobody(socket_path)
        assert "refused" in answer and "pid" not in answer, answer
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
        shutil.rmtree(open_folder, ignore_errors=True)


# ------------------------------------------------------------------ channel and lifecycle, light server


@pytest.fixture()
def light(monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_WARM_PRELOAD", "0")
    yield
    warm.stop()


def test_a_killed_server_is_replaced_by_the_next_job(light, tmp_path):
    assert job("list", None, tmp_path / "ws", tmp_path / "logs").run().ok
    old = warm.current()
    os.kill(old.process.pid, signal.SIGKILL)
    old.process.wait(10)
    follow = job("list", None, tmp_path / "ws", tmp_path / "logs")
    outcome = follow.run()
    assert outcome.ok and follow.path == "warm", outcome.failure()
    assert warm.current().process.pid != old.process.pid


def _continue(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # already continued and ended


def _hold_first_job(tmp_path: Path) -> tuple[EngineJob, threading.Thread]:
    """A job of a one-job server, stopped (SIGSTOP) as soon as its pid is known: it holds the only slot."""
    assert job("list", None, tmp_path / "ws", tmp_path / "logs", max_jobs=1).run().ok  # the server, one at a time
    held = job("list", None, tmp_path / "ws", tmp_path / "logs", max_jobs=1)
    runner = threading.Thread(target=held.run)
    runner.start()
    deadline = time.monotonic() + 30
    while held.pid is None and time.monotonic() < deadline:
        time.sleep(0.001)
    os.killpg(held.pid, signal.SIGSTOP)  # a list job's child still imports its modules for 0.3 s or more
    return held, runner


def test_jobs_over_the_limit_queue_and_say_so(light, tmp_path):
    held, runner = _hold_first_job(tmp_path)
    seen: list[dict[str, Any]] = []
    waiting = job("list", None, tmp_path / "ws", tmp_path / "logs", max_jobs=1)

    def on_event(event: dict[str, Any]) -> None:
        seen.append(event)
        if event.get("stage") == "queued":
            _continue(held.pid)

    try:
        outcome = waiting.run(on_event)
    finally:
        _continue(held.pid)
        runner.join(30)
    assert outcome.ok
    assert seen[0]["event"] == "progress" and seen[0]["message"].startswith("queued: 1 job ahead"), seen[0]


def test_a_cancelled_queued_job_never_starts(light, tmp_path):
    held, runner = _hold_first_job(tmp_path)
    queued = threading.Event()
    waiting = job("list", None, tmp_path / "ws", tmp_path / "logs", max_jobs=1)
    try:
        outcome = waiting.run(lambda e: e.get("stage") == "queued" and queued.set(), queued.is_set)
    finally:
        _continue(held.pid)
        runner.join(30)
    assert outcome.cancelled and outcome.returncode == 130 and waiting.pid is None
    status = warm.current().status()
    assert status["jobs_served"] == 2 and status["queued"] == 0  # the cancelled one was never forked


def test_the_server_ends_when_idle(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOSTUDIO_WARM_PRELOAD", "0")
    try:
        assert job("list", None, tmp_path / "ws", tmp_path / "logs", idle_s=1.0).run().ok
        server = warm.current()
        server.process.wait(15)
        assert server.process.returncode == 0 and not server.socket_path.exists()
    finally:
        warm.stop()


def test_scripts_without_fork_run_each_job_as_a_process(tmp_path, monkeypatch):
    monkeypatch.setattr(warm, "supported", lambda: False)  # Windows and macOS take this path
    spawned = job("list", None, tmp_path / "ws", tmp_path / "logs")
    outcome = spawned.run()
    assert outcome.ok and spawned.path == "process" and warm.current() is None
