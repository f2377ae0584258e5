"""scripts/qgis-root: a run's mounts and processes end with it however it ends, and a root is never deleted
while anything is mounted in it (a bound folder would be deleted with it).

Needs root (mount, chroot) and a built root: `make test` builds the 3.40 root before running these.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QGIS_ROOT = str(REPO / "scripts" / "qgis-root")
VERSION = os.environ.get("GEOSTUDIO_ROOT_TEST_VERSION", "3.40")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="entering a QGIS root needs root (mount, chroot)")


def root_cmd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([QGIS_ROOT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def root() -> Path:
    path = Path(root_cmd("path", VERSION).stdout.strip())
    if not (path / ".geostudio-root").is_file():
        pytest.fail(f"the QGIS {VERSION} root is not built: run `scripts/qgis-root build {VERSION}` (make test does)")
    return path


def mounts_under(path: Path, env: dict | None = None) -> list[str]:
    return root_cmd("mounts", str(path), env=env).stdout.split()


def processes_inside(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "root").startswith(str(path)):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def start_sleeping_run(root: Path) -> subprocess.Popen:
    # SIGINT as a terminal's Ctrl-C delivers it: a run started in the background (as CI may start make) inherits
    # SIGINT ignored, and a shell cannot trap a signal it started with ignored.
    proc = subprocess.Popen([QGIS_ROOT, "run", VERSION, "--", "/bin/bash", "-c", "echo ready; exec sleep 300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.poll() is not None else line
    return proc


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_run_leaves_nothing_mounted_and_no_process(root, how):
    proc = start_sleeping_run(root)
    try:
        during = mounts_under(root)
        assert f"{root}/proc" in during and str(root / REPO.relative_to("/")) in during  # the check sees them
        assert processes_inside(root)
        os.kill(proc.pid, how)  # the script itself, not its process group: cleanup must not rely on a trap
        proc.wait(timeout=30)
        assert wait_until(lambda: not mounts_under(root)), mounts_under(root)
        assert wait_until(lambda: not processes_inside(root)), processes_inside(root)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lock = subprocess.run(["flock", "-x", "-n", f"{root}.lock", "true"])
    assert lock.returncode == 0, "the killed run still holds the root's lock"


def test_a_finished_run_passes_its_exit_status_and_cleans_its_scratch(root):
    done = subprocess.run([QGIS_ROOT, "run", VERSION, "--", "/bin/bash", "-c",
                           'echo "$HOME"; touch "$(dirname "$(dirname "$GEOSTUDIO_ENGINE_PYTHON")")/probe"; exit 3'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout.splitlines()[0] == "/tmp/home"  # not the host's home: that is never mounted
    assert "Read-only file system" in done.stderr  # the engine env is mounted read-only
    assert not mounts_under(root)
    assert not [p for p in (root.parent / "scratch").glob("*") if not p.name.isdigit() or
                not Path(f"/proc/{p.name}").exists()]


def test_remove_refuses_while_a_run_holds_the_root(root):
    proc = start_sleeping_run(root)
    try:
        refused = root_cmd("remove", VERSION)
        assert refused.returncode != 0 and "a run or build holds it" in refused.stderr
        assert (root / ".geostudio-root").is_file()
    finally:
        proc.kill()
        proc.wait()


def test_remove_refuses_a_root_with_a_folder_mounted_in_it_and_keeps_that_folder(tmp_path):
    roots = tmp_path / "roots"
    env = {"GEOSTUDIO_QGIS_ROOTS": str(roots)}
    fake = Path(root_cmd("path", VERSION, env=env).stdout.strip())
    (fake / "home").mkdir(parents=True)
    (fake / ".geostudio-root").write_text("suite=test\n")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "/bin/bash", "-c",
                               f'mount --bind "{precious}" "{fake}/home" && echo ready && exec sleep 300'],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert mounts_under(fake, env) == [f"{fake}/home"]
        refused = root_cmd("remove", VERSION, env=env)
        assert refused.returncode != 0 and "still mounted" in refused.stderr, refused.stderr
        assert (precious / "keep.txt").read_text() == "mine"
    finally:
        holder.kill()
        holder.wait()
    assert wait_until(lambda: not mounts_under(fake, env))
    assert root_cmd("remove", VERSION, env=env).returncode == 0
    assert not fake.exists()
    assert (precious / "keep.txt").read_text() == "mine"
