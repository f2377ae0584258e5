"""The QgsTask bridge against the real engine: progress, the succeeded/failed signals, errors shown in the
message bar and log by whoever started the task, cancel."""

from __future__ import annotations

import os
import time

from conftest import sample_onboarding_payload, tiny_tune_payload, wait_for


def run_task(task, timeout: float = 180):
    from geostudio_plugin import tasks

    tasks.start(task)
    wait_for(lambda: task not in tasks._alive, timeout=timeout)
    return task


def test_catalog_task_reports_progress_and_result(extended_iface, workspace):
    from geostudio_plugin.tasks import EngineTask

    results, failures, progress = [], [], []
    task = EngineTask("catalog", "catalog")
    task.succeeded.connect(results.append)
    task.failed.connect(failures.append)
    task.progressChanged.connect(progress.append)
    run_task(task)
    assert results and not failures, failures
    connectors = {c["id"]: c for c in results[0]["summary"]["connectors"]}
    assert {"sentinelhub", "sentinel_aws", "nasa_earthdata", "IBMResearchSTAC", "TheWeatherCompany",
            "climate_data_store"} <= set(connectors)
    s2 = next(c for c in connectors["sentinelhub"]["collections"] if c["collection"] == "s2_l2a")
    assert s2["modality_tag"] == "S2L2A"
    assert [b["band_name"] for b in s2["bands"] if b["RGB_band"]] == ["B02", "B03", "B04"]
    assert progress and max(progress) == 100.0


def test_engine_error_reaches_message_bar_with_details_and_log(plugin, extended_iface):
    """The task signals a typed failure and shows nothing itself; the dock that started it shows the message
    with QGIS's own "more" details and logs the full text."""
    from qgis.core import Qgis, QgsApplication

    from geostudio_plugin.contract import EngineFailure

    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tab, level: logged.append((tab, msg)))
    payload = sample_onboarding_payload()
    payload["label_suffix"] = "_S1Hand.tif"  # equal to the data suffix: the spec is invalid
    plugin.toggle_dock("onboarding")
    dock = plugin.docks["onboarding"]
    bar = extended_iface.messageBar()
    bar.details.clear()
    failures = []
    task = dock.start_engine_task("GeoStudio: onboard", "onboard", payload, dock._done)
    task.failed.connect(failures.append)
    wait_for(lambda: dock.task is None, timeout=120)
    failure, = failures
    assert isinstance(failure, EngineFailure) and not failure.cancelled
    assert failure.code == "invalid_spec" and failure.exit_code == 3 == task.outcome.returncode
    assert failure.log_path == str(task.outcome.log_path)
    (title, text, details, level), = [d for d in bar.details if d[3] == Qgis.MessageLevel.Critical]
    assert title == "GeoStudio" and details.startswith("GeoStudio: onboard")  # the job is in Details (issue 10)
    assert "label_suffix '_S1Hand.tif' equals a data source's file_suffix" in text
    assert "Value error" not in text
    assert "label_suffix" in details and "Engine log" in details
    assert any(tab == "GeoStudio" and "label_suffix" in msg for tab, msg in logged)


def test_a_task_alone_shows_nothing(extended_iface, workspace, tmp_path):
    """Tasks never reach the message bar: a task nobody listens to fails silently, its signal says why."""
    from geostudio_plugin.tasks import EngineTask

    bar = extended_iface.messageBar()
    bar.details.clear()
    failures = []
    task = EngineTask("GeoStudio: catalog", "catalog", python=tmp_path / "no-such-python")
    task.failed.connect(failures.append)
    run_task(task)
    assert "Set up engine" in failures[0].message
    assert bar.details == []


def test_missing_engine_gives_setup_hint(extended_iface, workspace, tmp_path):
    from qgis.core import Qgis

    from geostudio_plugin.gui.messages import show_failure
    from geostudio_plugin.tasks import EngineTask

    task = EngineTask("GeoStudio: catalog", "catalog", python=tmp_path / "no-such-python")
    task.failed.connect(lambda failure: show_failure(task.description(), failure))
    run_task(task)
    messages = extended_iface.messageBar().get_messages(Qgis.MessageLevel.Critical)
    assert any("Set up engine" in m for m in messages), messages


def _group_alive(pgid: int) -> bool:
    """Whether any process of the engine's process group (the engine and its children) still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_mid_training_stops_engine_and_keeps_nothing(extended_iface, workspace, trained_tune):
    from geostudio_plugin import tasks
    from geostudio_plugin.contract import is_progress
    from geostudio_plugin.tasks import EngineTask

    tunes_before = set(os.listdir(workspace / "tunes"))
    payload = tiny_tune_payload(trained_tune["dataset_id"], epochs=50, name="to-cancel")
    task = EngineTask("GeoStudio: tune to cancel", "tune", payload)
    failures = []
    task.failed.connect(failures.append)
    stages = []
    task.eventReceived.connect(lambda e: is_progress(e) and stages.append(e.get("stage")))
    tasks.start(task)
    wait_for(lambda: "train" in stages, timeout=120)
    pgid = task.job.pid  # its own session either way (a process, or a child of the warm engine): pid = group id
    assert _group_alive(pgid), "the engine should be training now"
    started = time.monotonic()
    task.cancel()
    wait_for(lambda: task not in tasks._alive, timeout=30)
    # The 5 s promise holds by construction: the client sends SIGTERM and SIGKILLs the group after
    # engine_client.CANCEL_GRACE_S (3 s). What shows the engine stopped by itself within that grace is its own
    # exit status 130 and its `cancelled` error event (a SIGKILL gives -9), not the wall clock, which a loaded
    # 2-core machine stretches (Qt's event loop here, the engine's torch threads there): 30 s is a hang bound.
    assert time.monotonic() - started < 30.0
    assert task.outcome.returncode == 130, (task.outcome.returncode, task.outcome.error)
    assert task.outcome.error and task.outcome.error["code"] == "cancelled"
    assert failures and failures[0].cancelled
    if task.job.process is not None:
        task.job.process.wait(timeout=5)  # reaped: the group id can no longer name the engine itself
    deadline = time.monotonic() + 5  # a warm engine's child is reaped by the server, which then answers
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(pgid), f"process group {pgid} still has processes after the cancel"
    assert set(os.listdir(workspace / "tunes")) == tunes_before
    assert not [p for p in (workspace / ".tmp").iterdir() if "to-cancel" in p.name]
