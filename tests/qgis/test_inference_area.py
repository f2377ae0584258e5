"""The Inference dock's area-and-dates mode, driven like a person: draw on the map, select features, type a
bbox and dates, read the label; a loaded run exports its map with one click."""

from __future__ import annotations

import pytest


@pytest.fixture()
def dock(plugin, qgis_new_project):
    """The Inference dock in area mode over a Web Mercator canvas, with one model to pick."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsProject, QgsRectangle

    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.ui.tuneCombo.addItem("flood model (tune-1)", "tune-1")
    dock.ui.tuneCombo.setCurrentIndex(dock.ui.tuneCombo.findData("tune-1"))
    canvas = plugin.iface.mapCanvas()
    before = (canvas.mapSettings().destinationCrs(), canvas.extent(), canvas.size())  # the session's canvas
    canvas.resize(600, 400)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setExtent(QgsRectangle(1460000, 1320000, 1480000, 1335000))  # Maiduguri, in metres
    dock.ui.modeCombo.setCurrentIndex(dock.ui.modeCombo.findText("Area and dates"))
    yield dock
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()
    canvas.setDestinationCrs(before[0])  # other tests compare layer and canvas extents in one CRS
    canvas.resize(before[2])
    if not before[1].isEmpty():  # the session's canvas starts with none: setting an empty extent corrupted a
        canvas.setExtent(before[1])  # later raster render (double free in QgsRasterPipe on QGIS 3.22)


def _mouse(canvas, kind, x: int, y: int, button=None):
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QPoint, Qt

    button = button or Qt.MouseButton.LeftButton
    return QgsMapMouseEvent(canvas, kind, QPoint(x, y), button, button, Qt.KeyboardModifier.NoModifier)


def _close(a, b, tolerance: float) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b)) and len(a) == len(b)


def test_drawing_on_the_map_sets_the_area_and_keeps_an_outline(dock):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle
    from qgis.gui import QgsMapToolPan
    from qgis.PyQt.QtCore import QEvent, Qt
    from qgis.PyQt.QtGui import QKeyEvent

    canvas = dock.iface.mapCanvas()
    assert dock.ui.modeStack.currentWidget() is dock.ui.areaPage
    pan = QgsMapToolPan(canvas)
    canvas.setMapTool(pan)
    dock.ui.drawButton.click()
    tool = canvas.mapTool()
    assert tool is dock.drawer.tool
    tool.canvasPressEvent(_mouse(canvas, QEvent.Type.MouseButtonPress, 100, 80))
    tool.canvasMoveEvent(_mouse(canvas, QEvent.Type.MouseMove, 250, 200))
    tool.canvasMoveEvent(_mouse(canvas, QEvent.Type.MouseMove, 400, 300))
    tool.canvasReleaseEvent(_mouse(canvas, QEvent.Type.MouseButtonRelease, 400, 300))
    assert canvas.mapTool() is pan  # the previous tool is back

    pixels = canvas.getCoordinateTransform()
    drawn = QgsRectangle(pixels.toMapCoordinates(100, 80), pixels.toMapCoordinates(400, 300))
    expected = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:3857"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"),
                                      QgsProject.instance()).transformBoundingBox(drawn)
    request = dock.area_request()
    assert _close(request.bbox_4326, [expected.xMinimum(), expected.yMinimum(), expected.xMaximum(),
                                      expected.yMaximum()], 1e-9)
    assert 13.1 < request.bbox_4326[0] < request.bbox_4326[2] < 13.35  # near Maiduguri
    outline = dock.drawer.outline_geometry().boundingBox()  # canvas CRS, drawn where the mouse went
    assert _close([outline.xMinimum(), outline.yMinimum(), outline.xMaximum(), outline.yMaximum()],
                  [drawn.xMinimum(), drawn.yMinimum(), drawn.xMaximum(), drawn.yMaximum()], 1.0)

    dock.ui.drawButton.click()  # a right click cancels a second drawing: the area stays, pan is back
    canvas.mapTool().canvasPressEvent(_mouse(canvas, QEvent.Type.MouseButtonPress, 10, 10,
                                             button=Qt.MouseButton.RightButton))
    assert canvas.mapTool() is pan and not dock.drawer.outline_geometry().isEmpty()
    dock.ui.drawButton.click()  # and so does Esc
    canvas.mapTool().keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier))
    assert canvas.mapTool() is pan

    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))  # the outline follows the map's CRS
    moved = dock.drawer.outline_geometry().boundingBox()
    assert _close([moved.xMinimum(), moved.yMinimum(), moved.xMaximum(), moved.yMaximum()], request.bbox_4326, 1e-6)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))

    dock.close()  # the outline leaves the map with the dock, and comes back with it
    assert dock.drawer.outline_geometry().isEmpty()
    dock.show()  # (which lists the workspace's models again: the test's model is added back)
    assert not dock.drawer.outline_geometry().isEmpty()
    dock.ui.tuneCombo.addItem("flood model (tune-1)", "tune-1")

    dock.ui.clearAreaButton.click()
    assert dock.drawer.outline_geometry().isEmpty()
    dock.ui.runButton.click()
    assert dock.task is None and dock.ui.resultLabel.text().startswith("Area: none yet")


def test_selected_features_in_a_third_crs_give_the_bbox(dock):
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFeature, QgsGeometry,
                           QgsProject, QgsVectorLayer)

    layer = QgsVectorLayer("Polygon?crs=EPSG:32633", "fields", "memory")
    shapes = ["POLYGON((300000 1300000, 310000 1300000, 312000 1309000, 300000 1308000, 300000 1300000))",
              "POLYGON((350000 1350000, 351000 1350000, 351000 1351000, 350000 1350000))"]
    features = []
    for wkt in shapes:
        feature = QgsFeature()
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(layer)
    dock.ui.selectedButton.click()
    assert dock.ui.resultLabel.text().startswith("Area: select features of a polygon layer first")
    first = next(layer.getFeatures())
    layer.selectByIds([first.id()])
    dock.iface.setActiveLayer(layer)
    dock.ui.selectedButton.click()
    assert dock.ui.resultLabel.text() == "Area: the 1 selected feature(s) of fields."

    shape = QgsGeometry(first.geometry()).densifyByCount(20)  # the edges curve in longitude/latitude
    shape.transform(QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                           QgsProject.instance()))
    box = shape.boundingBox()
    request = dock.area_request()
    assert _close(request.bbox_4326, [box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()], 1e-8)
    whole = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:4326"),
                                   QgsProject.instance()).transformBoundingBox(first.geometry().boundingBox())
    assert whole.xMaximum() - box.xMaximum() > 1e-4  # the shape's own extent, not its UTM box's (larger)
    assert 13.1 < box.xMinimum() < 13.3 and 11.7 < box.yMinimum() < 11.9  # UTM 33N, near Maiduguri
    payload = request.to_payload()
    assert payload["spatial_domain"]["bbox"] == [list(request.bbox_4326)] and not payload["spatial_domain"]["urls"]
    assert payload["fine_tuning_id"] == "tune-1" and payload["maxcc"] == 80


def test_typed_area_dates_and_masks_make_the_payload(dock, monkeypatch):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QDate, QDateTime
    from qgis.PyQt.QtTest import QTest
    from qgis.PyQt.QtWidgets import QLineEdit

    typed = dock.ui.areaExtentWidget.findChild(QLineEdit, "mCondensedLineEdit")
    typed.clear()
    QTest.keyClicks(typed, "13.146418,13.215874,11.799808,11.871586 [EPSG:4326]")
    dock.ui.startDateEdit.setDate(QDate(2024, 9, 10))
    dock.ui.endDateEdit.setDate(QDate(2024, 9, 14))
    dock.ui.maxccSpin.setValue(30)
    dock.ui.masksGroup.setCollapsed(False)
    QgsApplication.processEvents()  # the page grows with the opened box: nothing squashed
    assert dock.ui.masksGroup.height() >= dock.ui.masksGroup.sizeHint().height()
    dock.ui.cloudMaskCheck.click()
    dock.ui.waterMaskCheck.click()
    assert not dock.drawer.outline_geometry().isEmpty()  # a typed area is outlined too
    sent = {}
    monkeypatch.setattr(dock, "start_engine_task", lambda description, command, spec, *a, **k: sent.update(
        command=command, spec=spec) or "task")
    dock.ui.runButton.click()
    assert sent["command"] == "infer"
    spec = sent["spec"]
    # QgsExtentWidget keeps typed degrees to 4 decimals on QGIS 3.22 (about 10 m): within half of that
    assert _close(spec["spatial_domain"]["bbox"][0], [13.146418, 11.799808, 13.215874, 11.871586], 5e-5)
    assert spec["temporal_domain"] == ["2024-09-10_2024-09-14"]
    assert spec["maxcc"] == 30 and spec["fine_tuning_id"] == "tune-1"
    assert spec["post_processing"] == {"cloud_masking": "True", "snow_ice_masking": "False",  # the Studio's form
                                       "permanent_water_masking": "True"}
    dock.ui.singleDateCheck.click()
    assert not dock.ui.endDateEdit.isEnabled()
    assert dock.availability_request().dates == ("2024-09-10",)
    dock.ui.checkAvailabilityButton.click()
    assert sent["command"] == "check-availability"
    assert sent["spec"]["temporal_domain"] == ["2024-09-10"] and sent["spec"]["maxcc"] == 30
    assert _close(sent["spec"]["spatial_domain"]["bbox"][0], spec["spatial_domain"]["bbox"][0], 1e-12)

    # what must be fixed is said in the label, naming the field, and nothing starts
    sent.clear()
    today = QDate.currentDate()
    cases = [
        (lambda: dock.ui.startDateEdit.setDate(today.addDays(3)), "Start date: "),
        (lambda: (dock.ui.singleDateCheck.click(), dock.ui.startDateEdit.setDate(QDate(2024, 9, 14)),
                  dock.ui.endDateEdit.setDate(QDate(2024, 9, 10))), "End date: 2024-09-10 is before the start"),
        (lambda: dock.ui.endDateEdit.setDate(today.addDays(1)), "End date: "),
        (lambda: (dock.ui.endDateEdit.setDate(QDate(2024, 9, 20)), typed.clear(),
                  QTest.keyClicks(typed, "13.2,13.2,11.8,11.9 [EPSG:4326]")), "Area: the rectangle is empty"),
        (lambda: dock.ui.tuneCombo.setCurrentIndex(-1), "Model: pick a tuned model first"),
    ]
    for change, said in cases:
        change()
        dock.ui.runButton.click()
        assert dock.ui.resultLabel.text().startswith(said), (said, dock.ui.resultLabel.text())
        assert "b2182b" in dock.ui.resultLabel.styleSheet()
    assert sent == {}
    said = dock.ui.resultLabel.text()
    dock.ui.masksGroup.setCollapsed(True)  # opening or closing the masks box keeps what the label says
    assert dock.ui.resultLabel.text() == said

    dock.ui.modeCombo.setCurrentIndex(dock.ui.modeCombo.findText("Raster layer"))  # back: nothing cut off
    QgsApplication.processEvents()
    assert dock.ui.modeStack.currentWidget() is dock.ui.rasterPage
    browse = dock.ui.browseButton
    assert browse.mapTo(dock.ui.rasterPage, browse.rect().topRight()).x() < dock.ui.modeStack.width()


def test_a_finished_area_run_loads_and_exports_its_map_from_the_dock(dock, tmp_path, monkeypatch):
    from run_fixture import make_run

    from qgis.core import QgsCoordinateReferenceSystem, QgsDateTimeRange, QgsProject, QgsRectangle
    from qgis.PyQt.QtCore import QDate, QDateTime
    from qgis.PyQt.QtWidgets import QFileDialog

    import json

    from geostudio_plugin import run_layers

    assert not dock.ui.exportButton.isEnabled()
    record = make_run(tmp_path / "run")
    for output in record["outputs"]:  # the record may name its files relative to its folder
        output.update({k: output[k].rsplit("/", 1)[-1] for k in ("rgb", "prediction", "masked")})
    (tmp_path / "run" / "inference.json").write_text(json.dumps(record))
    from geostudio_plugin import tasks

    monkeypatch.setattr(tasks, "start", lambda task: task)  # the engine's area pipeline is not there yet
    dock.ui.areaExtentWidget.setOutputExtentFromUser(QgsRectangle(13.14, 11.79, 13.22, 11.88),
                                                     QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.ui.startDateEdit.setDate(QDate(2024, 9, 12))
    dock.ui.endDateEdit.setDate(QDate(2024, 9, 20))
    dock.ui.runButton.click()
    assert dock.task is not None and not dock.ui.runButton.isEnabled() and dock.ui.cancelButton.isEnabled()
    assert dock.task.command == "infer" and dock.task.job.spec["temporal_domain"] == ["2024-09-12_2024-09-20"]
    dock.task.succeeded.emit({"outputs": {"inference_json": str(tmp_path / "run" / "inference.json")},
                              "summary": {"inference_id": record["inference_id"]}})  # as the engine ends a run
    assert dock.task is None and dock.ui.runButton.isEnabled()
    assert dock.ui.exportButton.isEnabled()
    root = QgsProject.instance().layerTreeRoot()
    assert root.findGroup("GeoStudio: flood-resnet — Gulf of Honduras — 2024-09-12 to 2024-09-20 (2 dates)") is not None
    assert "Temporal Controller" in dock.ui.resultLabel.text()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "maps" / "flood"), ""))
    dock.ui.exportButton.click()
    assert (tmp_path / "maps" / "flood.png").stat().st_size > 10000
    assert (tmp_path / "maps" / "flood.pdf").read_bytes()[:5] == b"%PDF-"
    assert dock.ui.resultLabel.text().startswith("Map exported: ")
    assert dock.export_content.title.endswith("2024-09-20")  # no frame chosen: the latest date
    canvas = dock.iface.mapCanvas()
    try:  # the Temporal Controller on the first date: the export shows that date, the one the person sees
        canvas.setTemporalRange(run_layers.day_range("2024-09-12"))
        dock.ui.exportButton.click()
        assert dock.export_content.title == "flood-resnet — Gulf of Honduras — 2024-09-12"
        assert [lyr.name() for lyr in dock.export_content.layers][0] == "Masked prediction, 2024-09-12"
    finally:
        canvas.setTemporalRange(QgsDateTimeRange(QDateTime(), QDateTime()))  # the controller off again

    broken = json.loads((tmp_path / "run" / "inference.json").read_text())
    broken["outputs"][0]["prediction"] = str(tmp_path / "gone_pred.tif")
    (tmp_path / "run" / "broken.json").write_text(json.dumps(broken))
    dock._area_done({"outputs": {"inference_json": str(tmp_path / "run" / "broken.json")}, "summary": {}})
    assert dock.ui.resultLabel.text().startswith("Done, but the run could not be loaded: QGIS cannot open "
                                                 "Prediction, 2024-09-12")

    drawing = dock.drawer.tool
    dock.ui.drawButton.click()
    assert dock.iface.mapCanvas().mapTool() is drawing
    dock.release_canvas()  # the plugin unloads: no tool of ours left on the map, nothing drawn
    assert dock.iface.mapCanvas().mapTool() is not drawing and dock.drawer.outline.scene() is None
