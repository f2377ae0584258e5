"""The Inference dock's area-and-dates mode end to end, as a person uses it: a STAC endpoint set as the Connectors
dock sets it (the loopback server of tests/support/local_stac.py, serving the bundled MARIDA patches), a model
tuned on MARIDA through the engine, an area drawn on the map with the mouse, dates, the cloud mask, Check
availability, Run; then the layer group, its styles, its time and the label. And one date without data."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO, wait_for

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import MARIDA_CLASSES, marida_colour  # noqa: E402

BOTH = (-88.19, 15.77, -88.15, 15.84)  # two 16PCC patches, seen on 2018-08-30 and on 2018-09-14 (stac_data.py)
DAYS = ("2018-08-30", "2018-09-14")

pytestmark = pytest.mark.training


@pytest.fixture(scope="module")
def stac(marida_stac):
    """The loopback STAC API (conftest: one per session, shared with the Processing Data tests)."""
    return marida_stac


@pytest.fixture(scope="module")
def area_workspace(marida_workspace):
    """The MARIDA model's workspace (conftest), so the session's workspace keeps the models other tests count on."""
    return marida_workspace


@pytest.fixture()
def dock(plugin, stac, area_workspace, session_workspace, marida_tune, qgis_new_project):
    """The Inference dock in area mode, the STAC endpoint set as a user sets it, the map on the Gulf of
    Honduras in longitude/latitude."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle

    from geostudio_plugin import credentials, settings

    settings.set_workspace(str(area_workspace))  # set back to the session's after the test
    credentials.set_endpoint("sentinel_aws", stac.stac_url)
    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.refresh_tunes()
    dock.ui.tuneCombo.setCurrentIndex(dock.ui.tuneCombo.findData(marida_tune))
    assert dock.ui.tuneCombo.currentData() == marida_tune
    canvas = plugin.iface.mapCanvas()
    before = (canvas.mapSettings().destinationCrs(), canvas.extent(), canvas.size())
    canvas.resize(600, 400)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(QgsRectangle(-88.22, 15.75, -88.12, 15.86))
    dock.ui.modeCombo.setCurrentIndex(dock.ui.modeCombo.findText("Area and dates"))
    yield dock
    credentials.set_endpoint("sentinel_aws", "")
    settings.set_workspace(str(session_workspace))
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()
    QgsProject.instance().timeSettings().reset()  # a time-aware run extended the project's time range
    canvas.setDestinationCrs(before[0])
    canvas.resize(before[2])
    if not before[1].isEmpty():  # the session's canvas starts with none: setting an empty extent corrupted a
        canvas.setExtent(before[1])  # later raster render (double free in QgsRasterPipe on QGIS 3.22)


def _mouse(canvas, kind, point):
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QPoint, Qt

    button = Qt.MouseButton.LeftButton
    return QgsMapMouseEvent(canvas, kind, QPoint(round(point.x()), round(point.y())), button, button,
                            Qt.KeyboardModifier.NoModifier)


def draw(dock, box) -> None:
    """Drag a rectangle from the box's north-west corner to its south-east corner with the dock's map tool."""
    from qgis.PyQt.QtCore import QEvent

    canvas = dock.iface.mapCanvas()
    pixels = canvas.getCoordinateTransform()
    north_west, south_east = pixels.transform(box[0], box[3]), pixels.transform(box[2], box[1])
    dock.ui.drawButton.click()
    tool = canvas.mapTool()
    assert tool is dock.drawer.tool
    tool.canvasPressEvent(_mouse(canvas, QEvent.Type.MouseButtonPress, north_west))
    tool.canvasMoveEvent(_mouse(canvas, QEvent.Type.MouseMove, south_east))
    tool.canvasReleaseEvent(_mouse(canvas, QEvent.Type.MouseButtonRelease, south_east))


def finish(dock, timeout: float = 240) -> str:
    wait_for(lambda: dock.task is None, timeout=timeout)
    return dock.ui.resultLabel.text()


def legend(layer) -> dict[int, str]:
    return {int(c.value): c.label for c in layer.renderer().classes()}


def test_every_date_of_a_range_runs_from_the_dock_into_a_time_aware_group(dock):
    from qgis.core import QgsDateTimeRange, QgsPalettedRasterRenderer, QgsProject
    from qgis.PyQt.QtCore import QDate, QDateTime, QTime

    from geostudio_plugin import run_layers

    draw(dock, BOTH)
    bbox = dock.area_request().bbox_4326
    assert all(abs(a - b) < 0.001 for a, b in zip(bbox, BOTH)), bbox  # within a pixel of the drag
    dock.ui.startDateEdit.setDate(QDate(2018, 8, 1))
    dock.ui.endDateEdit.setDate(QDate(2018, 9, 30))
    dock.ui.everyDateCheck.click()
    dock.ui.masksGroup.setCollapsed(False)
    dock.ui.cloudMaskCheck.click()

    dock.ui.checkAvailabilityButton.click()
    said = finish(dock, 60)
    assert said.startswith("Data for every date: Run predicts on it."), said
    for day in DAYS:  # each day with data, one line each, naming the range it came from
        assert f"\n{day} (of 2018-08-01_2018-09-30): 1 scene, cloud " in said, said

    dock.ui.runButton.click()
    assert dock.task is not None and dock.task.job.spec["temporal_each"] is True
    said = finish(dock)
    assert said.startswith("Done: ") and said.endswith(
        "2 date(s) loaded. Step through them with the Temporal Controller."), said

    run = dock.run
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup(f"GeoStudio: {run.title}")
    assert group is not None
    # model (its name, not its id), place (the area's centre), dates
    assert run.title == f"marida-area — 15.805° N, 88.170° W — {DAYS[0]} to {DAYS[1]} (2 dates)", run.title
    assert [child.name() for child in group.children()] == [DAYS[1], DAYS[0]]  # latest on top
    classes = {i: name for i, name in enumerate(MARIDA_CLASSES, start=1)}
    for day in run.dates:
        assert day.date in DAYS
        assert day.rgb is not None and day.rgb.bandCount() == 3 and day.rgb.renderer().type() == "multibandcolor"
        assert isinstance(day.prediction.renderer(), QgsPalettedRasterRenderer)
        shown = legend(day.prediction)
        assert {k: shown[k] for k in classes} == classes  # the model's classes, by id, in their colours
        colours = {int(c.value): c.color.name() for c in day.prediction.renderer().classes()}
        assert {k: colours[k] for k in classes} == {k: marida_colour(k) for k in classes}
        masked = legend(day.masked)
        assert masked[999] == "Cloud (masked)" and masked[1] == classes[1]
        start = QDateTime(QDate.fromString(day.date, "yyyy-MM-dd"), QTime(0, 0))
        for layer in day.layers():
            assert layer.temporalProperties().isActive()
            assert layer.temporalProperties().fixedTemporalRange().begin() == start
    for n, when in enumerate(DAYS):  # each frame of the Temporal Controller shows its own date's layers
        begin = QDateTime(QDate.fromString(when, "yyyy-MM-dd"), QTime(12, 0))
        frame = QgsDateTimeRange(begin, begin.addSecs(3600))
        shown = run_layers.visible_at(run.layers(), frame)
        assert shown and {lyr.name().rsplit(", ", 1)[-1] for lyr in shown} == {when}
        other = run.dates[1 - n] if run.dates[n].date == when else run.dates[n]
        assert not any(lyr.temporalProperties().isVisibleInTemporalRange(frame) for lyr in other.layers())


def test_a_date_without_data_says_the_nearest_dates(dock):
    from qgis.PyQt.QtCore import QDate

    draw(dock, BOTH)
    dock.ui.singleDateCheck.click()
    assert not dock.ui.everyDateCheck.isEnabled()
    dock.ui.startDateEdit.setDate(QDate(2018, 9, 1))
    dock.ui.runButton.click()
    said = finish(dock, 60)
    assert said.startswith("Failed: No scene over the area below 80% cloud for 2018-09-01: nearest dates with data "
                           "2018-08-30, 2018-09-14."), said
    assert "b2182b" in dock.ui.resultLabel.styleSheet()


@pytest.fixture()
def area_settings(plugin, stac, area_workspace, session_workspace, marida_tune, qgis_new_project, qgis_processing):
    """The STAC endpoint and the module's workspace set as a user sets them, for Processing; set back after."""
    from qgis.core import QgsProject

    from geostudio_plugin import credentials, settings

    settings.set_workspace(str(area_workspace))
    credentials.set_endpoint("sentinel_aws", stac.stac_url)
    yield marida_tune
    credentials.set_endpoint("sentinel_aws", "")
    settings.set_workspace(str(session_workspace))
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()
    QgsProject.instance().timeSettings().reset()


def test_processing_runs_an_area_and_a_date_and_loads_the_run(area_settings):
    """geostudio:infer_area over the two patches in Web Mercator on a day with data: the run's record, one uint8
    prediction of the model's class ids on the fetched input's grid, and the run loaded as one group."""
    import json
    from pathlib import Path

    import processing
    from osgeo import gdal
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle,
                           QgsReferencedRectangle)

    wgs84, mercator = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(wgs84, mercator, QgsProject.instance())
    area = QgsReferencedRectangle(to_mercator.transformBoundingBox(QgsRectangle(*BOTH)), mercator)
    result = processing.run("geostudio:infer_area", {
        "MODEL": area_settings, "EXTENT": area, "START_DATE": DAYS[0], "CLOUD_MASK": True})

    record = json.loads(Path(result["INFERENCE_JSON"]).read_text())
    assert Path(result["INFERENCE_JSON"]).parent == Path(result["INFERENCE_FOLDER"])
    assert record["tune_id"] == area_settings and [d["date"] for d in record["dates"]] == [DAYS[0]]
    assert len(result["PREDICTIONS"]) == 1
    prediction = gdal.Open(result["PREDICTIONS"][0])
    (fetched,) = record["dates"][0]["inputs"].values()
    fetched = gdal.Open(str(Path(result["INFERENCE_FOLDER"]) / fetched))
    assert prediction.GetProjection() == fetched.GetProjection()
    assert prediction.GetGeoTransform() == fetched.GetGeoTransform()
    assert (prediction.RasterXSize, prediction.RasterYSize) == (fetched.RasterXSize, fetched.RasterYSize)
    band = prediction.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    values = set(band.ReadRaster()) - {255}  # uint8 bytes (no numpy here: test_plugin checks this process for it)
    assert values and values <= set(range(1, len(MARIDA_CLASSES) + 1)), values  # the model's class ids

    group = QgsProject.instance().layerTreeRoot().findGroup(
        f"GeoStudio: marida-area — 15.805° N, 88.170° W — {DAYS[0]}")
    assert group is not None, [g.name() for g in QgsProject.instance().layerTreeRoot().children()]
    names = {layer.name() for layer in group.findLayers() for layer in [layer.layer()]}
    assert {f"Prediction, {DAYS[0]}", f"Masked prediction, {DAYS[0]}", f"Input RGB, {DAYS[0]}"} <= names, names


def test_processing_refuses_a_range_into_the_future_naming_the_end_date(area_settings, area_workspace):
    import datetime as dt

    import processing
    from qgis.core import QgsProcessingException

    runs = sorted((area_workspace / "inferences").glob("*")) if (area_workspace / "inferences").is_dir() else []
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    with pytest.raises(QgsProcessingException, match=rf"End date: {tomorrow} is in the future.*END_DATE"):
        processing.run("geostudio:infer_area", {"MODEL": area_settings, "EXTENT": "-88.19,-88.15,15.77,15.84 "
                                                "[EPSG:4326]", "START_DATE": DAYS[0], "END_DATE": tomorrow})
    after = sorted((area_workspace / "inferences").glob("*")) if (area_workspace / "inferences").is_dir() else []
    assert after == runs  # nothing started, nothing half-written
