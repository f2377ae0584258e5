"""The warm engine from the plugin's side: tasks run in it (or as processes when it is off), Settings shows its
state and stops it, and a QGIS that dies hard leaves no server behind. The engine side (latency, cancel,
faults, resources, the channel) is tests/engine/test_engine_server.py. The servers here import nothing heavy
(GEOSTUDIO_WARM_PRELOAD=0): what is tested is the lifecycle, not the imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


def _state(pid: int) -> str:
    """A process's state letter ("" when it is gone; "Z" is a zombie nobody reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _ended(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _state(pid) in ("", "Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture()
def light_server(monkeypatch):
    from geostudio_plugin import engine_server_client

    if not engine_server_client.supported():
        pytest.skip("the warm engine runs on Linux")
    monkeypatch.setenv("GEOSTUDIO_WARM_PRELOAD", "0")
    engine_server_client.stop()
    yield engine_server_client
    engine_server_client.stop()


def _run_task(command: str):
    from geostudio_plugin import tasks
    from geostudio_plugin.tasks import EngineTask

    task = EngineTask(f"GeoStudio: {command}", command)
    results, failures = [], []
    task.succeeded.connect(results.append)
    task.failed.connect(failures.append)
    tasks.start(task)
    wait_for(lambda: task not in tasks._alive, timeout=120)
    assert results and not failures, failures
    return task


@pytest.mark.engine_bound
def test_tasks_run_in_the_warm_engine_and_as_processes_when_it_is_off(extended_iface, workspace, light_server):
    from geostudio_plugin import settings

    settings.set_warm_engine(True)
    first, second = _run_task("list"), _run_task("list")
    assert first.job.path == second.job.path == "warm" and first.job.pid != second.job.pid
    server = light_server.current()
    assert server is not None and server.status()["jobs_served"] == 2
    settings.set_warm_engine(False)
    try:
        off = _run_task("list")
    finally:
        settings.set_warm_engine(True)
    assert off.job.path == "process" and light_server.current().status()["jobs_served"] == 2


@pytest.mark.engine_bound
def test_settings_show_the_warm_engine_and_stop_it(extended_iface, workspace, light_server):
    from geostudio_plugin import settings
    from geostudio_plugin.gui.settings_dialog import SettingsDialog

    settings.set_warm_engine(True)  # the suite's default is off (conftest: WARM_ENGINE_IN_TESTS)
    dialog = SettingsDialog()
    assert dialog.warmStateLabel.text().startswith("Stopped") and not dialog.warmStopButton.isEnabled()
    _run_task("list")
    pid = light_server.current().process.pid
    dialog.refresh_warm_state()
    text = dialog.warmStateLabel.text()
    assert text.startswith(f"Running: pid {pid}, ") and "1 job(s) served" in text and " MB" in text
    dialog.warmStopButton.click()
    assert dialog.warmStateLabel.text().startswith("Stopped") and not dialog.warmStopButton.isEnabled()
    assert _ended(pid, 10), "the server did not stop"
    dialog.deleteLater()


def test_warm_engine_settings_are_saved(extended_iface, workspace):
    from geostudio_plugin import settings
    from geostudio_plugin.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    assert dialog.warmCheck.isChecked() == settings.warm_engine()
    dialog.warmCheck.setChecked(False)
    dialog.warmAtStartCheck.setChecked(True)
    dialog.warmIdleSpin.setValue(5)
    dialog.save()
    try:
        assert (settings.warm_engine(), settings.warm_engine_at_start(), settings.warm_engine_idle_minutes()) == \
            (False, True, 5)
    finally:
        settings.set_warm_engine(True)
        settings.set_warm_engine_at_start(False)
        settings.set_warm_engine_idle_minutes(15)
    dialog.deleteLater()


_HOLDER = """
import sys, time
from pathlib import Path
from geostudio_plugin import engine_runtime, engine_server_client
server = engine_server_client.warm_server(Path(sys.argv[1]), engine_runtime.engine_environ(), {})
print(server.process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.engine_bound
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm engine runs on Linux")
def test_a_qgis_killed_hard_leaves_no_server(engine_python, tmp_path):
    """A process that started the server through the plugin's module (as QGIS does) is SIGKILLed: nothing
    tells the server, yet it ends by itself (its stdin reaches end of file)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GEOSTUDIO_WARM_PRELOAD": "0"}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(engine_python)], stdout=subprocess.PIPE, text=True,
                              env=env, cwd=tmp_path)
    try:
        server_pid = int(holder.stdout.readline())
        assert _state(server_pid) not in ("", "Z")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert _ended(server_pid, 10), "the server outlived the process that started it"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()
