"""GeoStudio algorithms running real engine jobs: Pre-scan dataset and Export model through processing.run on the
bundled data and the session's trained model, Run inference on raster layer cancelled through its feedback and in
a batch of two rasters (one with an extent in another CRS), and a dock task's end refreshing the lists."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from pathlib import Path

import pytest
from conftest import SAMPLES, wait_for

HOLDOUT = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"
GHANA = SAMPLES / "train" / "Ghana_53713_S1Hand.tif"
PRESCAN = {"SOURCE": str(SAMPLES / "train"), "LABEL_SUFFIX": "_LabelHand.tif", "DATA_SUFFIXES": "_S1Hand.tif"}


def _rows(layer) -> list[dict]:  # noqa: ANN001
    return [{f.name(): feature[f.name()] for f in layer.fields()} for feature in layer.getFeatures()]


@pytest.mark.engine_bound
def test_prescan_writes_a_json_report_and_a_table_of_what_it_found(plugin, qgis_processing, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    report = tmp_path / "prescan.json"
    result = processing.run("geostudio:prescan_dataset", {**PRESCAN, "REPORT": str(report),
                                                          "TABLE": str(tmp_path / "prescan.csv")})
    assert (result["PAIRS"], result["PROBLEMS"]) == (6, 0) and Path(result["REPORT"]) == report
    written = json.loads(report.read_text())
    assert written["ok"] and written["label_values"] == [-1, 0, 1]
    assert written["bands_by_suffix"]["_S1Hand.tif"] == [{"id": "0", "value": "VV"}, {"id": "1", "value": "VH"}]
    table = QgsVectorLayer(result["TABLE"], "prescan", "ogr")
    assert table.isValid() and table.featureCount() == 2
    label, data = _rows(table)
    assert (label["kind"], label["suffix"], int(label["files"]), label["dtypes"]) == (
        "label", "_LabelHand.tif", 6, "int16")
    assert (data["kind"], data["suffix"], data["band_names"], data["band_count"], data["crs"], data["sizes"]) == (
        "data", "_S1Hand.tif", "VV, VH", "2", "EPSG:4326", "512x512")


@pytest.mark.engine_bound
def test_prescan_lists_problems_in_an_html_report_and_the_table(plugin, qgis_processing, tmp_path):
    import processing

    report = tmp_path / "prescan.html"
    result = processing.run("geostudio:prescan_dataset", {**PRESCAN, "DATA_SUFFIXES": "_S1Hand.tif, _S2Hand.tif",
                                                          "REPORT": str(report), "TABLE": "TEMPORARY_OUTPUT"})
    assert result["PROBLEMS"] >= 1
    problems = [row for row in _rows(result["TABLE"]) if row["kind"] == "problem"]
    assert len(problems) == result["PROBLEMS"] and any("_S2Hand.tif" in row["message"] for row in problems)
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and f"{result['PROBLEMS']} problem(s)" in page
    assert "_S2Hand.tif" in page and "<td>problem</td>" in page


@pytest.mark.engine_bound
def test_export_model_writes_the_tune_as_one_zip(plugin, qgis_processing, trained_tune, tmp_path):
    import processing

    output = tmp_path / "exports" / "water.zip"
    result = processing.run("geostudio:export_model", {"MODEL": trained_tune["tune_id"], "OUTPUT": str(output)})
    assert Path(result["OUTPUT"]) == output and result["TUNE_ID"] == trained_tune["tune_id"]
    with zipfile.ZipFile(output) as archive:
        names = set(archive.namelist())
        assert {"tune.json", trained_tune["checkpoint"], trained_tune["config"]} <= names
        assert json.loads(archive.read("tune.json"))["tune_id"] == trained_tune["tune_id"]
    assert not list(output.parent.glob(".*part*"))  # nothing half-written beside it


class CancelWhileLoading:
    """A Processing feedback cancelled from another thread 0.2 s after the engine's first progress (it is then
    loading the model: seconds of imports), as Cancel in the Processing dialog does."""

    def __init__(self) -> None:
        from qgis.core import QgsProcessingFeedback

        outer = self

        class Feedback(QgsProcessingFeedback):
            def setProgressText(self, text: str) -> None:  # noqa: N802 - QGIS API
                super().setProgressText(text)
                if outer.timer is None:
                    outer.timer = threading.Timer(0.2, outer.cancel)
                    outer.timer.start()

        self.feedback = Feedback()
        self.timer = None
        self.cancelled_at = None

    def cancel(self) -> None:
        self.cancelled_at = time.monotonic()
        self.feedback.cancel()


@pytest.mark.engine_bound
def test_cancelling_through_the_feedback_stops_the_engine_within_5_s_and_keeps_nothing(
        plugin, qgis_processing, trained_tune, session_workspace, tmp_path):
    import processing

    runs = set((session_workspace / "inferences").glob("*"))
    output = tmp_path / "prediction.tif"
    canceller = CancelWhileLoading()
    result = processing.run("geostudio:infer_raster", {"INPUT": str(HOLDOUT), "MODEL": trained_tune["tune_id"],
                                                        "OUTPUT": str(output)}, feedback=canceller.feedback)
    returned = time.monotonic()
    assert canceller.cancelled_at is not None, "the engine reported no progress"
    assert returned - canceller.cancelled_at < 5.0
    assert "OUTPUT" not in result or not result["OUTPUT"]
    assert not output.exists() and not list(tmp_path.iterdir())
    assert set((session_workspace / "inferences").glob("*")) == runs  # no run record either
    assert "was cancelled; the engine stopped" in canceller.feedback.textLog()


@pytest.mark.engine_bound
def test_a_batch_of_two_rasters_one_with_an_extent_in_web_mercator(plugin, trained_tune, tmp_path):
    """Two rows of a batch, run as the toolbox runs them (QgsProcessingAlgRunnerTask: processAlgorithm on a worker
    thread, both queued at once); the second only inside a quarter of its raster, given in EPSG:3857."""
    from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                           QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback, QgsProject,
                           QgsRasterLayer, QgsRectangle, QgsReferencedRectangle)

    ghana = QgsRasterLayer(str(GHANA), "ghana")
    full = ghana.extent()
    quarter = QgsRectangle(full.xMinimum(), full.center().y(), full.center().x(), full.yMaximum())
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(ghana.crs(), mercator, QgsProject.instance())
    rows = [{"INPUT": str(HOLDOUT), "MODEL": trained_tune["tune_id"], "OUTPUT": str(tmp_path / "holdout.tif")},
            {"INPUT": str(GHANA), "MODEL": trained_tune["tune_id"], "OUTPUT": str(tmp_path / "ghana.tif"),
             "EXTENT": QgsReferencedRectangle(to_mercator.transformBoundingBox(quarter), mercator)}]
    done: dict[int, tuple[bool, dict]] = {}
    keep = []  # the algorithms, contexts and feedbacks must outlive their tasks
    for n, parameters in enumerate(rows):
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("geostudio:infer_raster")
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        context.setProject(QgsProject.instance())
        task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
        task.executed.connect(lambda ok, results, n=n: done.update({n: (ok, results)}))
        keep.append((algorithm, context, feedback, task))
        QgsApplication.taskManager().addTask(task)
    wait_for(lambda: len(done) == 2, timeout=240)
    assert all(ok for ok, _ in done.values()), done
    holdout, part = (QgsRasterLayer(done[n][1]["OUTPUT"], str(n)) for n in (0, 1))
    assert holdout.isValid() and holdout.extent() == QgsRasterLayer(str(HOLDOUT)).extent()
    assert part.isValid() and part.crs() == ghana.crs()
    pixel = full.width() / ghana.width()
    assert abs(part.extent().xMinimum() - full.xMinimum()) < 2 * pixel
    assert abs(part.extent().yMaximum() - full.yMaximum()) < 2 * pixel
    assert abs(part.width() - ghana.width() / 2) <= 2 and abs(part.height() - ghana.height() / 2) <= 2
    for layer in (holdout, part):
        block = layer.dataProvider().block(1, layer.extent(), layer.width(), layer.height())
        values = {block.value(r, c) for r in range(0, layer.height(), 8) for c in range(0, layer.width(), 8)}
        assert values <= {0.0, 1.0}, values


@pytest.mark.engine_bound
def test_a_dock_task_that_changes_the_workspace_refreshes_the_lists(plugin, tmp_path):
    """The docks start engine tasks (tasks.EngineTask); when one that adds or removes a model ends, the Processing
    MODEL lists follow without reloading the plugin. Here a delete, on a workspace of its own."""
    from fake_workspace import write_model
    from qgis.core import QgsApplication

    from geostudio_plugin import contract, settings, tasks

    before = settings.workspace()
    write_model(tmp_path, "gone-soon")
    write_model(tmp_path, "stays", created="2026-11-29T12:00:00")
    settings.set_workspace(str(tmp_path))
    try:
        QgsApplication.processingRegistry().providerById("geostudio").refreshAlgorithms()

        def options() -> list[str]:
            algorithm = QgsApplication.processingRegistry().algorithmById("geostudio:infer_raster")
            return algorithm.parameterDefinition("MODEL").options()

        assert options() == ["stays", "gone-soon"]
        outcome = []
        task = tasks.EngineTask("Delete a model", contract.DELETE, contract.delete_spec("tunes", "gone-soon"))
        task.succeeded.connect(lambda result: outcome.append(options()))  # what a dock reads when it hears of it
        task.failed.connect(outcome.append)
        tasks.start(task)
        wait_for(lambda: outcome, timeout=60)
        assert outcome == [["stays"]]
    finally:
        settings.set_workspace(str(before))
        QgsApplication.processingRegistry().providerById("geostudio").refreshAlgorithms()
