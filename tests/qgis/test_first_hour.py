"""Issue 10, a GIS analyst's first hour: the docks driven through their widgets (button.click(), typing,
choosing combo items), asserting what a person sees (labels, message bar, layers, canvas extent)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES, sample_onboarding_payload, wait_for

GUI = REPO / "geostudio_plugin" / "gui"


@pytest.fixture(scope="module")
def preview_dataset(session_workspace, engine_python) -> dict:
    """One onboarded dataset (the sample chips) to preview from the Datasets dock."""
    from geostudio_plugin.engine_client import EngineJob

    job = EngineJob("onboard", sample_onboarding_payload(chip_size=256, name="first-hour water"),
                    python=engine_python, workspace=session_workspace).run()
    assert job.ok, job.error_text()
    return job.result["summary"]


def _group_layers(name_start: str) -> list:
    from qgis.core import QgsProject

    root = QgsProject.instance().layerTreeRoot()
    groups = [g for g in root.findGroups() if g.name().startswith(name_start)]
    return [node.layer() for g in groups for node in g.findLayers()]


# ------------------------------------------------------------------ 1. Preview through its button
def test_preview_button_loads_sample_layers(plugin, preview_dataset, qgis_new_project):
    plugin.toggle_dock("onboarding")
    dock = plugin.docks["onboarding"]
    dock.ui.refreshButton.click()
    names = [dock.ui.datasetList.item(i).text() for i in range(dock.ui.datasetList.count())]
    row = next(i for i, n in enumerate(names) if n.startswith("first-hour water"))
    dock.ui.datasetList.setCurrentRow(row)
    dock.ui.previewButton.click()
    shown = _group_layers("GeoStudio preview: first-hour water")
    assert len(shown) == 6, [layer.name() for layer in shown]  # three image + label pairs
    assert all(layer.isValid() for layer in shown)
    canvas = plugin.iface.mapCanvas()
    assert canvas.extent().intersects(shown[0].extent())  # the map shows what was loaded


def test_every_clicked_connection_takes_no_argument():
    """clicked(bool) hands its ``checked`` to a slot that takes a parameter (Preview got count=False):
    every ``clicked.connect`` in gui/ goes to a lambda without parameters or a method with none."""
    offenders = []
    for path in sorted(GUI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        methods = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "connect"
                    and isinstance(call.func.value, ast.Attribute) and call.func.value.attr == "clicked"):
                continue
            target = call.args[0]
            if isinstance(target, ast.Lambda):
                params = target.args.args
            elif isinstance(target, ast.Attribute) and target.attr in methods:
                params = methods[target.attr].args.args[1:]
            else:
                params = ["unknown target"]
            if params:
                offenders.append(f"{path.name}:{call.lineno} {ast.unparse(target)[:60]}")
    assert not offenders, offenders


# ------------------------------------------------------------------ 2. Pre-scan proposes a modality
def _open_onboarding(plugin):
    plugin.toggle_dock("onboarding")
    return plugin.docks["onboarding"]


def _type(widget, text: str) -> None:
    from qgis.PyQt.QtTest import QTest

    widget.clear()
    QTest.keyClicks(widget, text)


def test_prescan_then_onboard_uses_the_proposed_modality(plugin, workspace, qgis_new_project):
    from qgis.core import Qgis

    dock = _open_onboarding(plugin)
    _type(dock.ui.nameEdit, "first-hour onboard")
    dock.ui.folderWidget.setFilePath(str(SAMPLES / "train"))
    _type(dock.ui.labelSuffixEdit, "_LabelHand.tif")
    _type(dock.ui.dataSuffixesEdit, "_S1Hand.tif")
    dock.ui.prescanButton.click()
    wait_for(lambda: dock.task is None, timeout=60)
    table = dock.ui.sourcesTable
    assert [table.item(0, c).text() for c in (0, 1, 3)] == ["_S1Hand.tif", "S1GRD", "VV, VH"]
    assert not dock.ui.filesHint.isVisible() and "needs" not in dock.ui.sourcesHint.text()
    bar = plugin.iface.messageBar()  # shared by the session: only this run's messages count
    errors_before = len(bar.get_messages(Qgis.MessageLevel.Critical))
    dock.ui.onboardButton.click()
    assert dock.task is not None
    wait_for(lambda: dock.task is None, timeout=120)
    assert not bar.get_messages(Qgis.MessageLevel.Critical)[errors_before:], bar.details
    assert any("onboarded" in text for _t, text, _m, level in bar.details if level == Qgis.MessageLevel.Success)
    names = [dock.ui.datasetList.item(i).text() for i in range(dock.ui.datasetList.count())]
    assert any(n.startswith("first-hour onboard — Segmentation, S1GRD") for n in names), names


def test_the_form_says_what_is_missing_next_to_the_field_before_onboard(plugin, workspace):
    from qgis.core import Qgis

    dock = _open_onboarding(plugin)
    assert dock.ui.filesHint.isVisible() and "dataset name" in dock.ui.filesHint.text()
    _type(dock.ui.nameEdit, "half filled")
    dock.ui.folderWidget.setFilePath(str(SAMPLES / "train"))
    _type(dock.ui.labelSuffixEdit, "_LabelHand.tif")
    table = dock.ui.sourcesTable
    table.item(0, 0).setText("_S1Hand.tif")
    table.item(0, 3).setText("VV, VH")
    assert not dock.ui.filesHint.isVisible()
    assert "Row 1 needs: Modality" in dock.ui.sourcesHint.text()  # said before Onboard is pressed
    assert table.item(0, 1).background().color().name() != table.item(0, 0).background().color().name()
    errors_before = len(plugin.iface.messageBar().get_messages(Qgis.MessageLevel.Critical))  # shared bar
    dock.ui.onboardButton.click()
    assert dock.task is None  # nothing sent: no engine error about data_sources.0.modality_tag
    assert not plugin.iface.messageBar().get_messages(Qgis.MessageLevel.Critical)[errors_before:]
    table.item(0, 1).setText("S1GRD")
    assert dock.ui.sourcesHint.text().startswith("Pick a collection")


@pytest.mark.parametrize("names, collection, tag", [
    (["VV", "VH"], None, "S1GRD"),
    ([f"Band {i}" for i in range(1, 14)], None, "S2L1C"),
    (["B02", "B03", "B04", "B8A"], None, "S2L2A"),
    (["Band 1", "Band 2", "Band 3"], None, "IMAGE"),
    (["VV", "VH"], {"connector": "x", "collection": "sentinel-1-grd", "modality_tag": ""}, "SENTINEL_1_GRD"),
    ([], {"modality_tag": "HLS"}, "HLS"),
])
def test_modality_proposals(names, collection, tag):
    from geostudio_plugin import contract

    assert contract.propose_modality(names, collection) == tag


# ------------------------------------------------------------------ 3. Empty fields look empty; a failed pre-scan ends
def test_empty_suffix_fields_look_empty_and_prescan_says_what_is_missing(plugin, workspace):
    dock = _open_onboarding(plugin)
    for edit in (dock.ui.labelSuffixEdit, dock.ui.dataSuffixesEdit):
        assert edit.text() == "" and edit.placeholderText().startswith("required")  # not a grey value
    dock.ui.folderWidget.setFilePath(str(SAMPLES / "train"))
    _type(dock.ui.labelSuffixEdit, "_LabelHand.tif")
    dock.ui.prescanButton.click()
    assert dock.task is None
    assert dock.ui.prescanLabel.text().startswith("Pre-scan needs the data suffixes")
    assert "Scanning" not in dock.ui.prescanLabel.text()
    assert "data suffixes" in dock.ui.filesHint.text() and dock.ui.filesHint.isVisible()


def test_a_failed_prescan_clears_scanning(plugin, workspace, tmp_path):
    dock = _open_onboarding(plugin)
    dock.ui.folderWidget.setFilePath(str(tmp_path / "no such folder"))
    _type(dock.ui.labelSuffixEdit, "_LabelHand.tif")
    _type(dock.ui.dataSuffixesEdit, "_S1Hand.tif")
    dock.ui.prescanButton.click()
    assert dock.ui.prescanLabel.text() == "Scanning…"
    wait_for(lambda: dock.task is None, timeout=60)
    assert dock.ui.prescanLabel.text().startswith("Pre-scan failed: "), dock.ui.prescanLabel.text()
    assert dock.ui.progressBar.text() == "Failed"
    assert dock.ui.prescanButton.isEnabled()


# ------------------------------------------------------------------ 5. A clear final state in every dock
@pytest.fixture()
def one_band_layer(qgis_new_project, tmp_path):
    """A single-band raster where the water model needs VV and VH: the engine refuses it."""
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    path = tmp_path / "one_band.tif"
    gdal.Translate(str(path), str(SAMPLES / "holdout" / "USA_905409_S1Hand.tif"), bandList=[1])
    layer = QgsRasterLayer(str(path), "one band")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


def _choose(combo, data) -> None:
    index = combo.findData(data)
    assert index >= 0, data
    combo.setCurrentIndex(index)


def test_a_failed_inference_says_failed_and_drops_the_run_progress(plugin, trained_tune, one_band_layer):
    from qgis.core import Qgis

    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    _choose(dock.ui.tuneCombo, trained_tune["tune_id"])
    dock.ui.layerCombo.setLayer(one_band_layer)
    assert "one band has only 1 band(s)" in dock.ui.modelInfoLabel.text()  # said before Run
    stages = []
    before = len(plugin.iface.messageBar().get_messages(Qgis.MessageLevel.Critical))
    dock.ui.runButton.click()
    assert dock.task is not None
    dock.task.eventReceived.connect(lambda _e: stages.append(dock.ui.resultLabel.text()))
    wait_for(lambda: dock.task is None, timeout=180)
    text = dock.ui.resultLabel.text()
    assert text.startswith("Failed: ") and len(text) > len("Failed: ") + 10, text
    assert text not in stages  # not the run's last progress text
    assert dock.ui.progressBar.text() == "Failed"
    assert dock.ui.runButton.isEnabled() and not dock.ui.cancelButton.isEnabled()
    assert len(plugin.iface.messageBar().get_messages(Qgis.MessageLevel.Critical)) == before + 1  # one message


def test_inference_without_a_model_says_so_next_to_the_button(plugin, workspace, one_band_layer):
    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.ui.tuneCombo.clear()
    dock.ui.layerCombo.setLayer(one_band_layer)
    dock.ui.runButton.click()
    assert dock.task is None
    assert dock.ui.resultLabel.text().startswith("Pick a tuned model")


@pytest.mark.training
def test_a_cancelled_tune_clears_its_metrics_and_says_cancelled(plugin, trained_tune):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    wait_for(lambda: dock.ui.templateCombo.count() > 0, timeout=60)
    _choose(dock.ui.datasetCombo, trained_tune["dataset_id"])
    dock.ui.templateCombo.setCurrentIndex(dock.ui.templateCombo.findText("timm_resnet : Segmentation"))
    _type(dock.ui.nameEdit, "to cancel")
    dock.form.field("runner.max_epochs").setValue(20)
    dock.form.field("data.crop_size").setValue(64)
    dock.ui.deviceCombo.setCurrentText("cpu")
    assert dock.ui.tuneList.count() and dock.ui.tuneList.currentRow() == 0  # a finished tune is highlighted
    dock.ui.startButton.click()
    assert dock.task is not None
    assert dock.ui.tuneList.currentRow() == -1 and not dock.ui.nameEdit.isEnabled()  # the form is locked
    wait_for(lambda: dock.task is None or dock.ui.metricsTable.rowCount() > 0, timeout=240)
    assert dock.task is not None and dock.ui.metricsTable.rowCount() > 0  # the run's live metrics
    wait_for(lambda: dock.task is None or dock.curve.points("train/loss"), timeout=240)
    assert dock.curve.points("train/loss")  # and its curve
    assert dock.ui.tuneList.item(0).text().startswith("to-cancel — timm_resnet18 — Running")  # the run, listed
    dock.ui.cancelButton.click()
    wait_for(lambda: dock.task is None, timeout=60)
    assert dock.ui.stageLabel.text().startswith("Cancelled")
    assert dock.ui.progressBar.text() == "Cancelled" and dock.ui.nameEdit.isEnabled()
    kept = [i for i in range(dock.ui.tuneList.count()) if dock.ui.tuneList.item(i).text().startswith("to-cancel")]
    if kept:  # cancelled after its first checkpoint: kept as Cancelled, selected, with its own numbers
        assert dock.ui.tuneList.currentRow() == kept[0] and " — Cancelled\n" in dock.ui.tuneList.item(kept[0]).text()
        assert dock.ui.resumeButton.isEnabled()
    else:  # before it: nothing kept, nothing that reads as a result
        assert dock.ui.metricsTable.rowCount() == 0 and not dock.curve.series
        assert dock.ui.tuneList.currentRow() == -1
        assert dock.ui.stageLabel.text() == "Cancelled before the first epoch ended: nothing was kept."


# ------------------------------------------------------------------ 6. The error leads with the reason, once
def test_a_failure_leads_with_the_reason_with_the_path_in_details(plugin, workspace, tmp_path):
    from qgis.core import Qgis

    dock = _open_onboarding(plugin)
    missing = tmp_path / "a long folder name that would push the reason out of the bar" / "data"
    dock.ui.folderWidget.setFilePath(str(missing))
    _type(dock.ui.labelSuffixEdit, "_LabelHand.tif")
    _type(dock.ui.dataSuffixesEdit, "_S1Hand.tif")
    bar = plugin.iface.messageBar()
    before = len(bar.details)
    dock.ui.prescanButton.click()
    wait_for(lambda: dock.task is None, timeout=60)
    shown = [d for d in bar.details[before:] if d[3] == Qgis.MessageLevel.Critical]
    assert len(shown) == 1, bar.details[before:]  # one message per failure
    title, text, more, _level = shown[0]
    assert title == "GeoStudio"
    assert str(tmp_path) not in text and not text.startswith("/"), text  # the reason, not a path, leads
    assert str(missing) in more  # the full path is in Details
    assert "pre-scan" in more


def test_qgis_own_task_failed_notice_gives_way_to_ours(monkeypatch):
    from types import SimpleNamespace

    from qgis.core import QgsApplication
    from qgis.gui import QgsMessageBar

    from geostudio_plugin.contract import EngineFailure
    from geostudio_plugin.gui import messages

    bar = QgsMessageBar()
    monkeypatch.setattr(messages, "_iface", lambda: SimpleNamespace(messageBar=lambda: bar))
    bar.pushInfo(messages.QGIS_TASK_FAILED, "GeoStudio: inference on one band")  # what QGIS 3.22 adds
    messages.show_failure("GeoStudio: inference on one band",
                          EngineFailure("/data/project/rasters/one_band.tif: has 1 band, the model reads 2 (VV, VH).",
                                        "Pick a raster with the model's bands."))
    QgsApplication.processEvents()
    assert [(item.title(), item.text()) for item in bar.items()] == [
        ("GeoStudio", "Has 1 band, the model reads 2 (VV, VH) (one_band.tif). Pick a raster with the model's bands.")]



# ------------------------------------------------------------------ layout: nothing clipped at the minimum width
def _clipped(dock) -> list[str]:
    """Visible controls that stick out of the dock's viewport or are squeezed below their minimum size hint."""
    from qgis.PyQt.QtCore import QPoint
    from qgis.PyQt.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QLabel, QLineEdit,
                                     QProgressBar, QWidget)

    viewport = dock.widget().viewport()
    out = []
    for child in dock.content.findChildren(QWidget):
        if not child.isVisibleTo(dock) or not isinstance(
                child, (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QLabel, QProgressBar)):
            continue
        if isinstance(child.parentWidget(), (QAbstractSpinBox, QComboBox, QLineEdit)) or child.objectName().startswith("qt_"):
            continue  # parts of another control
        if child.maximumWidth() <= child.width():
            continue  # sized by its owner (a QGIS widget's fixed-size tool button)
        left = child.mapTo(viewport, QPoint(0, 0)).x()
        if left < 0 or left + child.width() > viewport.width() + 1:
            out.append(f"{child.objectName() or type(child).__name__} sticks out ({left}+{child.width()} > "
                       f"{viewport.width()})")
        elif child.width() + 1 < child.minimumSizeHint().width():
            out.append(f"{child.objectName() or type(child).__name__} squeezed ({child.width()} < "
                       f"{child.minimumSizeHint().width()})")
    return out


def test_every_dock_at_its_minimum_width_clips_nothing(plugin):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import Qt

    from qgis.PyQt.QtWidgets import QWidget

    window = plugin.iface.mainWindow()
    if window.centralWidget() is None:  # the test iface's window has no map: give the docks a neighbour
        window.setCentralWidget(QWidget())
    window.resize(1280, 800)
    problems = {}
    sections = {"connectors": "connectors", "onboarding": "datasets", "tuning": "fine-tuning", "inference": "inference"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for key in ("connectors", "onboarding", "tuning", "inference"):
        plugin.toggle_dock(key)
        dock = plugin.docks[key]
        for _ in range(20):  # the window lays out asynchronously: ask until the panel is at its narrowest
            QgsApplication.processEvents()
            window.resizeDocks([dock], [1], Qt.Orientation.Horizontal)  # as narrow as the dock allows
            QgsApplication.processEvents()
            if dock.width() <= dock.minimumWidth() + 12:
                break
        assert dock.width() < 1280 // 2, (key, dock.width())  # the map keeps most of the window
        if key == "connectors":  # what it shows changes: the collection with the longest name picked
            wait_for(lambda: dock.ui.tree.topLevelItemCount() > 0, timeout=60)
            tree = dock.ui.tree
            items = [tree.topLevelItem(i).child(j) for i in range(tree.topLevelItemCount())
                     for j in range(tree.topLevelItem(i).childCount()) if tree.topLevelItem(i).child(j).data(0, 0x0100)]
            tree.setCurrentItem(max(items, key=lambda item: len(item.text(0)) + len(item.parent().text(0))))
            for _ in range(5):
                QgsApplication.processEvents()
                window.resizeDocks([dock], [1], Qt.Orientation.Horizontal)
        if _clipped(dock):
            problems[key] = _clipped(dock)
    assert not problems, problems


# ------------------------------------------------------------------ tooltips and help
def test_every_input_has_a_tooltip_and_every_dock_a_help_button(plugin, monkeypatch):
    from qgis.gui import QgsExtentWidget, QgsFileWidget
    from qgis.PyQt.QtGui import QDesktopServices
    from qgis.PyQt.QtWidgets import (QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QLineEdit,
                                     QWidget)

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    inputs = (QLineEdit, QComboBox, QAbstractSpinBox, QAbstractButton, QAbstractItemView, QgsFileWidget,
              QgsExtentWidget)
    missing = {}
    sections = {"connectors": "connectors", "onboarding": "datasets", "tuning": "fine-tuning", "inference": "inference"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for key in ("connectors", "onboarding", "tuning", "inference"):
        plugin.toggle_dock(key)
        dock = plugin.docks[key]
        bare = [w.objectName() for w in dock.content.findChildren(QWidget)
                if isinstance(w, inputs) and w.objectName() and not w.objectName().startswith(("m", "qt_"))
                and not w.toolTip()]
        if bare:
            missing[key] = bare
        dock.helpButton.click()
        assert opened and opened[-1].endswith(f"#{sections[key]}") and opened[-1].startswith("http"), opened
        assert f"\n### {sections[key].capitalize()}\n" in readme  # the anchor exists (GitHub-style heading id)
        opened.clear()
    assert not missing, missing


# ------------------------------------------------------------------ minor defects
def test_delete_with_nothing_selected_offers_nothing(plugin, preview_dataset, monkeypatch):
    from qgis.PyQt.QtWidgets import QMessageBox

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args) or QMessageBox.StandardButton.No)
    dock = _open_onboarding(plugin)
    dock.ui.refreshButton.click()
    assert dock.ui.datasetList.count() > 0
    dock.ui.datasetList.setCurrentRow(-1)
    dock.ui.deleteButton.click()
    assert not asked and dock.task is None  # no "Delete dataset <the first one>?"
    assert any("Select a dataset" in text for _t, text, _m, _l in plugin.iface.messageBar().details)
    names = [dock.ui.datasetList.item(i).text() for i in range(dock.ui.datasetList.count())]
    dock.ui.datasetList.setCurrentRow(next(i for i, n in enumerate(names) if n.startswith("first-hour water")))
    dock.ui.deleteButton.click()
    (_parent, _title, text, _buttons, default), = asked
    assert "first-hour water" in text and default == QMessageBox.StandardButton.No  # No is the default
    assert dock.task is None


def test_settings_say_the_engine_is_ready_and_offer_repair(plugin, workspace):
    from geostudio_plugin.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(plugin.iface.mainWindow())
    assert dialog.engineStatusLabel.text().startswith("Ready")
    assert dialog.setupButton.text() == "Repair engine…"
    dialog.deleteLater()


def test_menu_names_match_the_tab_names(plugin):
    sections = {"connectors": "connectors", "onboarding": "datasets", "tuning": "fine-tuning", "inference": "inference"}
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for key in ("connectors", "onboarding", "tuning", "inference"):
        plugin.toggle_dock(key)
        assert plugin.actions[key].text().replace("&&", "&") == plugin.docks[key].windowTitle()


# ------------------------------------------------------------------ inference: model info, names, legend, zoom
def test_inference_names_its_result_zooms_and_shows_a_legend_swatch(plugin, trained_tune, qgis_new_project):
    from qgis.core import QgsProject, QgsRasterLayer

    holdout = QgsRasterLayer(str(SAMPLES / "holdout" / "USA_905409_S1Hand.tif"), "USA_905409")
    QgsProject.instance().addMapLayer(holdout)
    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.refresh_tunes()
    _choose(dock.ui.tuneCombo, trained_tune["tune_id"])
    dock.ui.layerCombo.setLayer(holdout)
    assert dock.ui.modelInfoLabel.text().startswith("Reads bands 1 VV, 2 VH (S1GRD); predicts ")
    canvas = plugin.iface.mapCanvas()
    canvas.setExtent(holdout.extent().buffered(holdout.extent().width() * 50))
    dock.ui.runButton.click()
    wait_for(lambda: dock.task is None, timeout=180)
    assert dock.ui.resultLabel.text().startswith("Done: "), dock.ui.resultLabel.text()
    confidence, prediction = dock.loaded_layers  # the confidence layer (off) under the prediction
    assert f"{trained_tune['name']} on USA_905409" in prediction.name() and confidence.name().startswith("Confidence")
    legend = prediction.renderer().legendSymbologyItems()
    assert [(label, colour.alpha()) for label, colour in legend][:1] == [("Not water", 255)]  # a visible swatch
    assert canvas.extent().width() < holdout.extent().width() * 3  # zoomed to the result
    QgsProject.instance().removeAllMapLayers()


def test_connectors_search_without_a_match_says_so(plugin, workspace):
    plugin.toggle_dock("connectors")
    dock = plugin.docks["connectors"]
    wait_for(lambda: dock.ui.tree.topLevelItemCount() > 0, timeout=60)
    _type(dock.ui.searchEdit, "s1_grd")
    hub = next(dock.ui.tree.topLevelItem(i) for i in range(dock.ui.tree.topLevelItemCount())
               if not dock.ui.tree.topLevelItem(i).isHidden())
    s1 = next(hub.child(i) for i in range(hub.childCount()) if hub.child(i).text(0) == "s1_grd")
    dock.ui.tree.setCurrentItem(s1)
    details = dock.ui.detailsLabel.text()
    assert "s1_grd" in details and "Bands: VV" in details and "): <br>" not in details
    _type(dock.ui.searchEdit, "zzz-nothing")
    assert dock.ui.statusLabel.text().startswith("No connector, collection or band matches")
    assert dock.ui.detailsLabel.text() == ""  # no stale details
    dock.ui.searchEdit.clear()
    assert "connectors" in dock.ui.statusLabel.text()


def test_tabs_follow_the_menu_order_whatever_the_opening_order(plugin):
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QTabBar

    for key in ("inference", "onboarding", "connectors", "tuning"):
        plugin.actions[key].trigger()  # the menu entry, as a person opens it
        QgsApplication.processEvents()
    bars = [b for b in plugin.iface.mainWindow().findChildren(QTabBar) if b.count() >= 4]
    tabs = [[b.tabText(i) for i in range(b.count())] for b in bars]
    assert ["Connectors", "Datasets", "Fine-tuning", "Inference"] in tabs, tabs


def test_a_bad_tune_name_names_the_bad_characters_as_typed(plugin, workspace):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    _type(dock.ui.nameEdit, "flood/tune*v2")
    assert dock.ui.stageLabel.text().startswith("'/', '*' are not allowed in a tune name")
    dock.ui.startButton.click()
    assert dock.task is None
    _type(dock.ui.nameEdit, "flood tune v2")
    assert dock.ui.stageLabel.text() == ""


def test_colour_picker_raster_picker_and_help_menu(plugin, monkeypatch, qgis_new_project):
    from qgis.core import QgsProject
    from qgis.PyQt.QtGui import QColor, QDesktopServices
    from qgis.PyQt.QtWidgets import QColorDialog, QFileDialog

    monkeypatch.setattr(QColorDialog, "getColor", lambda *args: QColor("#ff0000"))
    dock = _open_onboarding(plugin)
    table = dock.ui.categoriesTable
    table.cellDoubleClicked.emit(1, 2)  # what a double-click on the colour cell sends
    assert table.item(1, 2).text() == "#ff0000" and table.item(1, 2).background().color().name() == "#ff0000"

    holdout = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(holdout), ""))
    plugin.toggle_dock("inference")
    inference = plugin.docks["inference"]
    inference.ui.browseButton.click()
    assert inference.ui.layerCombo.currentLayer().source() == str(holdout)
    assert QgsProject.instance().mapLayersByName("USA_905409_S1Hand")

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toString()) or True)
    plugin.actions["help"].trigger()
    assert opened and opened[0].startswith("http")
    QgsProject.instance().removeAllMapLayers()


def test_about_says_version_engine_and_workspace(plugin, qgis_iface):
    from qgis.PyQt.QtWidgets import QMessageBox

    from geostudio_plugin import settings

    plugin.actions["about"].trigger()
    box = next(b for b in qgis_iface.mainWindow().findChildren(QMessageBox) if b.objectName() == "geostudioAboutBox"
               and b.isVisible())
    version = next(line.split("=", 1)[1] for line in (REPO / "metadata.txt").read_text().splitlines()
                   if line.startswith("version="))
    assert f"GeoStudio for QGIS {version}" in box.text()
    assert str(settings.workspace()) in box.text() and "Engine: " in box.text()
    box.close()


def test_connectors_access_cells_say_which_credential_and_empty_connectors_say_why(plugin, workspace):
    plugin.toggle_dock("connectors")
    dock = plugin.docks["connectors"]
    wait_for(lambda: dock.ui.tree.topLevelItemCount() > 0, timeout=60)
    tops = [dock.ui.tree.topLevelItem(i) for i in range(dock.ui.tree.topLevelItemCount())]
    for top in tops:
        data = top.data(0, 0x0100) or {}
        if (data.get("access") or {}).get("state") == "credentials missing":
            assert top.text(3).startswith("needs "), top.text(3)
        assert top.childCount() > 0, top.text(0)  # never an empty branch without a word
    empty = [top for top in tops if top.child(0).text(0).startswith("No collections: ")]
    assert all(top.child(0).data(0, 0x0100) is None for top in empty)


def test_a_finished_tune_shows_its_loss_curve(plugin, trained_tune):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    dock.refresh_workspace()
    row = next(i for i in range(dock.ui.tuneList.count())
               if dock.ui.tuneList.item(i).toolTip() == trained_tune["tune_id"])
    dock.ui.tuneList.setCurrentRow(row)
    assert [e for e, _v in dock.curve.points("train/loss")] == [0]  # one epoch, drawn
    assert dock.curve.isVisible() and dock.ui.stageLabel.text().endswith("1 epoch on cpu in " +
                                                                          dock.ui.stageLabel.text().split(" in ")[-1])
    dock.curve.grab()  # paints without error



def test_the_bar_is_busy_while_the_engine_loads_terratorch(plugin):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    dock._busy_while_loading({"event": "progress", "stage": "load", "fraction": 0.03, "message": "loading TerraTorch"})
    assert dock.ui.progressBar.maximum() == 0  # a moving bar, not 3 % for half a minute
    dock._busy_while_loading({"event": "progress", "stage": "train", "fraction": 0.1, "message": "epoch 1/2"})
    assert dock.ui.progressBar.maximum() == 100





# ------------------------------------------------------------------ 4. An optical image through a radar model
def test_a_sentinel2_raster_is_refused_by_a_radar_model_naming_both_band_lists(plugin, trained_tune, qgis_new_project):
    import time

    from qgis.core import Qgis, QgsProject, QgsRasterLayer

    s2 = QgsRasterLayer(str(SAMPLES / "S2Hand" / "Spain_7370579_S2Hand.tif"), "Spain S2")
    QgsProject.instance().addMapLayer(s2)
    plugin.toggle_dock("inference")
    dock = plugin.docks["inference"]
    dock.refresh_tunes()
    _choose(dock.ui.tuneCombo, trained_tune["tune_id"])
    dock.ui.layerCombo.setLayer(s2)
    bar = plugin.iface.messageBar()
    before = len(bar.details)
    started = time.monotonic()
    dock.ui.runButton.click()
    wait_for(lambda: dock.task is None, timeout=180)
    text = dock.ui.resultLabel.text()
    assert text.startswith("Failed: ") and "1 B1, 2 B2" in text and "13 B12" in text and "VV, VH" in text, text
    assert not dock.loaded_layers
    critical = [d for d in bar.details[before:] if d[3] == Qgis.MessageLevel.Critical]
    assert len(critical) == 1 and critical[0][1].startswith("Spain_7370579_S2Hand.tif has bands 1 B1"), critical
    assert str(SAMPLES) not in critical[0][1] and str(SAMPLES) in critical[0][2]  # the full path is in Details
    assert time.monotonic() - started < 15  # refused from the header, before the model is loaded
    QgsProject.instance().removeAllMapLayers()
