"""Runs inside QGIS desktop (`qgis --code`), started by screenshot.py: open the demo project, show each
GeoStudio dock in turn and save the main window; then quit."""

import os
import time
from pathlib import Path

from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.utils import iface, plugins

OUT = Path(os.environ["SHOT_DIR"])
LOG = open(os.environ.get("SHOT_LOG", os.devnull), "a")  # noqa: SIM115


def trace(message: str) -> None:
    LOG.write(f"{time.strftime('%H:%M:%S')} {message}\n")
    LOG.flush()


def settle(seconds: float, wait_tasks: bool = True) -> None:
    """Process events for a while (and, with wait_tasks, until no task runs: at most 2 minutes more)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or (wait_tasks and QgsApplication.taskManager().countActiveTasks()):
        QgsApplication.processEvents()
        time.sleep(0.05)
        if time.monotonic() > deadline + 120:
            break


def shoot() -> None:
    window = iface.mainWindow()
    window.setGeometry(0, 0, 1600, 1000)
    project = os.environ.get("SHOT_PROJECT", "")
    if project and Path(project).exists():
        QgsProject.instance().read(project)
        iface.mapCanvas().zoomToFullExtent()
    trace("project read")
    plugin = plugins["geostudio_plugin"]
    plugin.toggle_dock("connectors")
    tree = plugin.docks["connectors"].ui.tree
    deadline = time.monotonic() + 90
    while not tree.topLevelItemCount() and time.monotonic() < deadline:
        settle(0.2)
    sentinel = tree.findItems("Sentinel Hub", Qt.MatchFlag.MatchExactly)
    if sentinel:
        collection = sentinel[0].child(4)  # s2_l2a
        collection.setExpanded(True)
        tree.setCurrentItem(collection)
    for key in ("onboarding", "tuning", "inference"):
        plugin.toggle_dock(key)
    onboarding = plugin.docks["onboarding"]
    import json

    repo = Path(os.environ["SHOT_HOLDOUT"]).parents[4]  # `qgis --code` runs this without __file__
    payload = json.loads((repo / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    payload["dataset_url"] = str(Path(os.environ["SHOT_HOLDOUT"]).parents[1] / "train")
    onboarding.load_payload(payload)
    trace("payload loaded")
    onboarding.ui.prescanButton.click()  # a real pre-scan of the sample folder, through its button
    wait_task(onboarding)
    trace("prescan done")
    onboarding.ui.datasetList.setCurrentRow(0)
    tuning = plugin.docks["tuning"]
    tuning.ui.nameEdit.setText("water-resnet18")
    tuning.form.field("runner.max_epochs").setValue(60)  # still running when the pictures are taken (cancelled after)
    tuning.ui.deviceCombo.setCurrentText("cpu")
    tuning.ui.startButton.click()  # a running tune: live metrics and its loss curve (cancelled after the shots)
    inference = plugin.docks["inference"]
    holdout = next((l for l in QgsProject.instance().mapLayers().values()
                    if l.source() == os.environ.get("SHOT_HOLDOUT")), None)
    if holdout is not None:
        inference.ui.layerCombo.setLayer(holdout)
        inference.refresh_tunes()
        inference.ui.runButton.click()  # a finished inference: its result line, its layer and legend
        wait_task(inference)
        trace(f"inference: {inference.ui.resultLabel.text()}")
        groups = QgsProject.instance().layerTreeRoot().children()
        for node in groups:  # the new run's group open with its legend, the demo's closed
            is_new = not node.name().startswith("GeoStudio demo")
            node.setExpanded(is_new)
            for child in node.children():
                child.setExpanded(is_new)
            trace(f"group {node.name()!r} expanded={is_new}")
        view = iface.layerTreeView()  # the view keeps its own expanded state: set it there too
        view.expandAllNodes()
        for node in groups:
            if node.name().startswith("GeoStudio demo"):
                view.collapse(view.node2index(node) if hasattr(view, "node2index")
                              else view.layerTreeModel().node2index(node))
        settle(0.5, wait_tasks=False)
    deadline = time.monotonic() + 240
    while tuning.task is not None and len(tuning.curve.points("val/loss")) < 3 and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.1)
    trace(f"tune: {tuning.ui.stageLabel.text()}")
    for key in ("onboarding", "tuning", "inference"):
        trace(f"shooting {key}")
        plugin.docks[key].raise_()
        settle(1.5, wait_tasks=False)  # the tune is still running: that is the picture
        window.grab().save(str(OUT / f"{key}.png"))
    tuning.ui.cancelButton.click()
    wait_task(tuning)
    connectors_flow(plugin, window)
    project = QgsProject.instance()  # no "save changes?" or "scratch layers will be lost" dialog on the way out
    project.removeMapLayers([i for i, l in project.mapLayers().items() if l.providerType() == "memory"])
    project.setDirty(False)
    iface.actionExit().trigger()


def wait_task(dock) -> None:
    deadline = time.monotonic() + 120
    while dock.task is not None and time.monotonic() < deadline:
        settle(0.2)


def connectors_flow(plugin, window) -> None:
    """Availability and fetch of MARIDA scenes from the loopback STAC (Sentinel AWS redirected there)."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle
    from qgis.PyQt.QtCore import QDate

    dock = plugin.docks["connectors"]
    dock.raise_()
    root = QgsProject.instance().layerTreeRoot()
    for group in root.children():
        group.setItemVisibilityChecked(False)
    aws = dock.ui.tree.findItems("Sentinel AWS (Earth Search)", Qt.MatchFlag.MatchExactly)[0]
    aws.setExpanded(True)
    dock.ui.tree.setCurrentItem(aws.child(0))
    box = QgsRectangle(-88.19, 15.77, -88.15, 15.84)
    dock.ui.extentWidget.setOutputExtentFromUser(box, QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.ui.dateStartEdit.setDate(QDate(2018, 8, 1))
    dock.ui.dateEndEdit.setDate(QDate(2018, 9, 30))
    dock.check_availability()
    wait_task(dock)
    dock.fetch_checked()
    wait_task(dock)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(box.buffered(0.005))
    canvas.refresh()
    settle(3)
    window.grab().save(str(OUT / "connectors.png"))


def shoot_safely() -> None:
    """A Python error would open a modal dialog in QGIS and hang the run: log it and quit instead."""
    try:
        shoot()
    except Exception:  # noqa: BLE001
        import traceback

        trace(traceback.format_exc())
        QgsProject.instance().setDirty(False)
        iface.actionExit().trigger()


QTimer.singleShot(2500, shoot_safely)
