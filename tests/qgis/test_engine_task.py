"""The QgsTask bridge against the real engine: progress, errors in the message bar and log, cancel."""

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

    results, progress = [], []
    task = EngineTask("catalog", "catalog", on_success=results.append)
    task.progressChanged.connect(progress.append)
    run_task(task)
    assert results, task.outcome.error_text() if task.outcome else task.exception
    connectors = {c["id"]: c for c in results[0]["summary"]["connectors"]}
    assert {"sentinelhub", "sentinel_aws", "nasa_earthdata", "IBMResearchSTAC", "TheWeatherCompany",
            "climate_data_store"} <= set(connectors)
    s2 = next(c for c in connectors["sentinelhub"]["collections"] if c["collection"] == "s2_l2a")
    assert s2["modality_tag"] == "S2L2A"
    assert [b["band_name"] for b in s2["bands"] if b["RGB_band"]] == ["B02", "B03", "B04"]
    assert progress and max(progress) == 100.0


def test_engine_error_reaches_message_bar_with_details_and_log(plugin, extended_iface):
    from qgis.core import Qgis, QgsApplication
    from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton

    from geostudio_plugin.tasks import EngineTask

    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tab, level: logged.append((tab, msg)))
    payload = sample_onboarding_payload()
    payload["label_suffix"] = "_S1Hand.tif"  # equal to the data suffix: the spec is invalid
    task = run_task(EngineTask("GeoStudio: onboard", "onboard", payload))
    assert task.outcome.returncode == 3
    (widget, level), = extended_iface.messageBar().widgets
    assert level == Qgis.MessageLevel.Critical
    assert "label_suffix '_S1Hand.tif' equals a data source's file_suffix" in widget.text()
    assert "Value error" not in widget.text()
    details, = [b for b in widget.findChildren(QPushButton) if b.text() == "Details"]
    details.click()
    box = next(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible())
    assert "label_suffix" in box.detailedText() and "Engine log" in box.detailedText()
    box.close()
    assert any(tab == "GeoStudio" and "label_suffix" in msg for tab, msg in logged)


def test_missing_engine_gives_setup_hint(extended_iface, workspace, tmp_path):
    from qgis.core import Qgis

    from geostudio_plugin.tasks import EngineTask

    run_task(EngineTask("GeoStudio: catalog", "catalog", python=tmp_path / "no-such-python"))
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
    from geostudio_plugin.tasks import EngineTask

    tunes_before = set(os.listdir(workspace / "tunes"))
    payload = tiny_tune_payload(trained_tune["dataset_id"], epochs=50, name="to-cancel")
    task = EngineTask("GeoStudio: tune to cancel", "tune", payload)
    stages = []
    task.eventReceived.connect(lambda e: e.get("event") == "progress" and stages.append(e.get("stage")))
    tasks.start(task)
    wait_for(lambda: "train" in stages, timeout=120)
    pgid = task.job.process.pid  # started with start_new_session: its pid is the group id
    assert _group_alive(pgid), "the engine should be training now"
    started = time.monotonic()
    task.cancel()
    wait_for(lambda: task not in tasks._alive, timeout=30)
    assert time.monotonic() - started < 5.0
    assert task.outcome.cancelled
    wait_for(lambda: not _group_alive(pgid), timeout=2)
    assert set(os.listdir(workspace / "tunes")) == tunes_before
    assert not [p for p in (workspace / ".tmp").iterdir() if "to-cancel" in p.name]
