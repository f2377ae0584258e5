"""The Inference dock's run history (issue 13): the list with timings, Re-open, Details, Delete (engine delete).

The area run is a folder of real GeoTIFFs written by run_fixture into the session's workspace; the raster-layer
run is one real inference through the dock with the session's tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, wait_for
from run_fixture import make_run

RUN_ID = "history-area-run"
TIMINGS = {"load_model_s": 8.4, "predict_s": 22.2, "write_cog_s": 1.3}


@pytest.fixture()
def area_run(workspace: Path):
    """An area-and-dates run kept in the workspace as the engine keeps one (inferences/<id>/inference.json)."""
    folder = workspace / "inferences" / RUN_ID
    record = make_run(folder)
    record.update({"inference_id": RUN_ID, "created": "2099-01-01T00:00:00Z", "status": "COMPLETED",
                   "timings": TIMINGS, "seconds": 95.0})
    (folder / "inference.json").write_text(json.dumps(record))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _row(dock, run_id: str) -> int:
    from qgis.PyQt.QtCore import Qt

    ids = [dock.ui.runList.item(r).data(Qt.ItemDataRole.UserRole)["inference_id"]
           for r in range(dock.ui.runList.count())]
    return ids.index(run_id) if run_id in ids else -1


def test_history_lists_reopens_details_and_deletes_an_area_run(plugin, area_run, qgis_new_project, monkeypatch):
    from qgis.core import QgsPalettedRasterRenderer, QgsProject
    from qgis.PyQt.QtWidgets import QMessageBox

    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    row = _row(dock, RUN_ID)  # listed when the dock became visible
    assert row == 0  # newest first
    text = dock.ui.runList.item(row).text()
    assert text.splitlines()[0] == "flood-resnet — Gulf of Honduras — Completed"
    assert text.splitlines()[1].strip() == ("2024-09-12 to 2024-09-20 (2 dates), 2 outputs · load 8.4 s · "
                                            "predict 22.2 s · total 1 min 35 s")
    assert not dock.ui.reopenButton.isEnabled()
    dock.ui.runList.setCurrentRow(row)
    assert dock.ui.reopenButton.isEnabled() and dock.ui.deleteButton.isEnabled()

    dock.ui.reopenButton.click()  # both dates: rgb, prediction, masked, confidence each
    assert len(dock.loaded_layers) == 8
    predictions = [lyr for lyr in dock.loaded_layers if lyr.name().startswith(("Prediction", "Masked"))]
    assert len(predictions) == 4 and all(isinstance(p.renderer(), QgsPalettedRasterRenderer) for p in predictions)
    tree = QgsProject.instance().layerTreeRoot()
    group = tree.findGroup("GeoStudio: flood-resnet — Gulf of Honduras — 2024-09-12 to 2024-09-20 (2 dates)")
    assert group is not None and [g.name() for g in group.children()] == ["2024-09-20", "2024-09-12"]
    assert dock.ui.exportButton.isEnabled() and dock.export_content is not None

    dialog = dock.show_details()
    assert json.loads(dialog.text())["timings"] == TIMINGS and dialog.editor.isReadOnly()
    dialog.close()

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args[2]) or QMessageBox.StandardButton.No)
    assert dock.delete_selected() is None
    assert "8 layer(s) in this project are removed too" in asked[0]
    assert area_run.is_dir() and len(QgsProject.instance().mapLayers()) == 8

    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    dock.ui.deleteButton.click()
    assert not QgsProject.instance().mapLayers()  # the run's layers left before its files
    assert not dock.ui.exportButton.isEnabled()
    wait_for(lambda: dock.task is None, timeout=60)
    assert not area_run.exists()
    assert _row(dock, RUN_ID) == -1
    assert dock.ui.resultLabel.text() == f"Deleted {RUN_ID} and its 8 layer(s)."


def test_history_reopens_a_real_raster_layer_run(plugin, trained_tune, qgis_new_project):
    from qgis.core import (QgsCoordinateReferenceSystem, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer,
                           QgsRectangle, QgsSingleBandPseudoColorRenderer)

    holdout = QgsRasterLayer(str(SAMPLES / "holdout" / "USA_905409_S1Hand.tif"), "USA_905409")
    QgsProject.instance().addMapLayer(holdout)
    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.ui.tuneCombo.setCurrentIndex(dock.ui.tuneCombo.findData(trained_tune["tune_id"]))
    dock.ui.layerCombo.setLayer(holdout)
    full = holdout.extent()  # a quarter of the chip: the run stays short
    quarter = QgsRectangle(full.xMinimum(), full.center().y(), full.center().x(), full.yMaximum())
    dock.ui.extentWidget.setOutputExtentFromUser(quarter, QgsCoordinateReferenceSystem("EPSG:4326"))
    assert dock.start_inference() is not None
    wait_for(lambda: dock.task is None, timeout=180)
    run_id = dock.ui.resultLabel.text().split(":")[1].strip()
    assert _row(dock, run_id) == 0  # listed as the run ended, on top
    first, second = dock.ui.runList.item(0).text().splitlines()
    assert first == f"{trained_tune['name']} — USA_905409 — Completed"
    assert second.strip().startswith("USA_905409_S1Hand.tif, 1 output · load ")
    record = json.loads((dock._run_folder({"inference_id": run_id}) / "inference.json").read_text())
    timings = record["timings"]
    assert second.strip() == (f"USA_905409_S1Hand.tif, 1 output · load {timings['load_model_s']:.1f} s · "
                              f"predict {timings['predict_s']:.1f} s · total {record['seconds']:.1f} s")

    QgsProject.instance().removeMapLayers([lyr.id() for lyr in dock.loaded_layers])
    dock.export_content = None
    dock.ui.exportButton.setEnabled(False)
    dock.ui.runList.setCurrentRow(0)
    confidence, prediction = dock.reopen_selected()
    assert isinstance(prediction.renderer(), QgsPalettedRasterRenderer)
    assert isinstance(confidence.renderer(), QgsSingleBandPseudoColorRenderer)
    assert abs(prediction.width() - 256) <= 1 and prediction.crs() == holdout.crs()
    assert abs(prediction.extent().xMinimum() - full.xMinimum()) < 1e-9
    assert abs(prediction.extent().yMaximum() - full.yMaximum()) < 1e-9
    group = QgsProject.instance().layerTreeRoot().findLayer(prediction.id()).parent()
    assert group.name().startswith(f"GeoStudio: {trained_tune['name']} — USA_905409_S1Hand.tif — ")
    assert dock.ui.exportButton.isEnabled()
    assert dock.ui.resultLabel.text() == f"Re-opened {run_id}: 2 layer(s)."
    QgsProject.instance().removeAllMapLayers()
    shutil.rmtree(dock._run_folder({"inference_id": run_id}))  # the session's workspace as it was
