"""The Fine-tuning dock's weights choice, Download weights, Models menu (export, import, model card, delete) and
template menu (import, export, delete), used as a person does: combos picked, menu entries and buttons clicked,
the file dialogs and confirmations answered (monkeypatched), and what the dock then shows read back (stage label,
message bar, history, template list). The engine is real; the Hugging Face hub is a loopback fake (HF_ENDPOINT);
the model is the session's tiny trained tune (no training here)."""

from __future__ import annotations

import json
import struct
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, wait_for

sys.path.insert(0, str(REPO / "tests" / "support"))
from fake_hub import serve, stop  # noqa: E402 - after the path

HUB_FILE = "timm/resnet18.a1_in1k/model.safetensors"  # where data/weights.json says timm_resnet18's weights are
PROBLEM = "color: #b2182b;"


@pytest.fixture(autouse=True)
def clean_weights_settings():
    """The weights choices these tests make must not reach the other tests' tunes."""
    yield
    from qgis.core import QgsSettings

    from geostudio_plugin import settings

    QgsSettings().remove(f"{settings.PREFIX}/tuning")
    settings.set_allow_downloads(False)


def _open(plugin, dataset_id: str):
    plugin.toggle_dock("tuning")
    dock = plugin.docks["tuning"]
    wait_for(lambda: dock.ui.templateCombo.count() > 0, timeout=60)
    dock.ui.datasetCombo.setCurrentIndex(dock.ui.datasetCombo.findData(dataset_id))
    return dock


def _pick_template_and_backbone(dock, backbone: str = "timm_resnet18") -> None:
    dock.ui.templateCombo.setCurrentIndex(dock.ui.templateCombo.findText("timm_resnet : Segmentation"))
    dock.ui.backboneCombo.setCurrentIndex(dock.ui.backboneCombo.findData(backbone))


def _tiny_form(dock, name: str) -> None:
    dock.ui.nameEdit.setText(name)
    dock.form.field("runner.max_epochs").setValue(1)
    dock.form.field("data.crop_size").setValue(64)
    dock.ui.deviceCombo.setCurrentText("cpu")


def _weights_entries(dock) -> list[str]:
    return [dock.ui.weightsCombo.itemText(i) for i in range(dock.ui.weightsCombo.count())]


def _pick_weights(dock, text: str) -> None:
    index = dock.ui.weightsCombo.findText(text)
    assert index >= 0, (text, _weights_entries(dock))
    dock.ui.weightsCombo.setCurrentIndex(index)


def _safetensors(path: Path) -> Path:
    """A tiny valid .safetensors file (one float tensor), written without torch."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0))
    return path


def _dry_run(dock) -> dict:
    """Click Dry run, wait; the dry run's tune.json (the one the history selects)."""
    from geostudio_plugin import settings

    dock.ui.dryRunButton.click()
    assert dock.task is not None
    wait_for(lambda: dock.task is None, timeout=120)
    if dock.text_dialog is not None:
        dock.text_dialog.close()
    record = dock.selected_record()
    assert record is not None, dock.ui.stageLabel.text()
    return json.loads((settings.workspace() / "tunes" / record["tune_id"] / "tune.json").read_text())


def _row_of(dock, tune_id: str) -> int:
    rows = [i for i in range(dock.ui.tuneList.count()) if dock.ui.tuneList.item(i).toolTip() == tune_id]
    return rows[0] if rows else -1


def _critical(bar) -> list[tuple]:
    from qgis.core import Qgis

    return [d for d in bar.details if d[3] == Qgis.MessageLevel.Critical]


# ------------------------------------------------------------------ Weights: remembered per backbone, in the spec
def test_the_weights_choice_is_remembered_per_backbone_and_reaches_the_tune(plugin, trained_tune, tmp_path,
                                                                             monkeypatch):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QFileDialog

    from geostudio_plugin import settings

    dock = _open(plugin, trained_tune["dataset_id"])
    _pick_template_and_backbone(dock)
    assert _weights_entries(dock) == ["Random initialisation", "Pre-trained (Hugging Face cache)", "Local checkpoint…"]
    assert dock.ui.weightsCombo.currentText() == "Random initialisation"  # the default: it needs nothing
    assert "offline" in dock.ui.weightsCombo.toolTip() and "Download" in dock.ui.weightsCombo.toolTip()
    assert dock.build_payload()["train_options"] == {"weights": "random"}

    checkpoint = _safetensors(tmp_path / "r18-start.safetensors")
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *args: asked.append(args[1]) or (str(checkpoint), "Checkpoints"))
    _pick_weights(dock, "Local checkpoint…")
    assert asked == ["Starting weights for timm_resnet18"]
    assert dock.ui.weightsCombo.currentText() == "File: r18-start.safetensors"
    assert settings.weights_file("timm_resnet18") == str(checkpoint)
    assert dock.build_payload()["train_options"] == {"weights": str(checkpoint)}

    dock.ui.backboneCombo.setCurrentIndex(dock.ui.backboneCombo.findData("timm_resnet50"))
    assert dock.ui.weightsCombo.currentText() == "Random initialisation"  # another backbone: its own choice
    assert "File: r18-start.safetensors" not in _weights_entries(dock)
    _pick_weights(dock, "Pre-trained (Hugging Face cache)")
    dock.ui.backboneCombo.setCurrentIndex(dock.ui.backboneCombo.findData("timm_resnet18"))
    assert dock.ui.weightsCombo.currentText() == "File: r18-start.safetensors"  # reselected
    dock.ui.backboneCombo.setCurrentIndex(dock.ui.backboneCombo.findData("timm_resnet50"))
    assert dock.build_payload()["train_options"] == {"weights": "pretrained"}
    dock.ui.backboneCombo.setCurrentIndex(dock.ui.backboneCombo.findData("timm_resnet18"))

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: ("", ""))  # picking again, then Cancel
    _pick_weights(dock, "Local checkpoint…")
    assert dock.ui.weightsCombo.currentText() == "File: r18-start.safetensors"

    _tiny_form(dock, "weights-file")
    record = _dry_run(dock)  # what the engine records and renders for that choice
    assert record["weights"] == {"origin": "file", "path": str(checkpoint), "pretrained": True}
    config = (settings.workspace() / "tunes" / record["tune_id"] / "config.yaml").read_text()
    assert str(checkpoint) in config and "backbone_pretrained: true" in config

    _pick_weights(dock, "Random initialisation")  # Duplicate brings the tune's own starting weights back
    dock.ui.tuneList.setCurrentRow(next(r for r in range(dock.ui.tuneList.count()) if (dock.ui.tuneList.item(r).data(
        Qt.ItemDataRole.UserRole) or {}).get("tune_id") == record["tune_id"]))
    dock.ui.duplicateButton.click()
    assert dock.ui.weightsCombo.currentText() == "File: r18-start.safetensors"
    assert dock.build_payload()["train_options"] == {"weights": str(checkpoint)}


# ------------------------------------------------------------------ Pre-trained missing -> Download (fake hub)
def test_missing_pretrained_weights_are_offered_for_download_which_shows_its_speed(plugin, trained_tune, tmp_path,
                                                                                   monkeypatch):
    from qgis.core import Qgis

    from geostudio_plugin import settings

    weights = bytes(25_000_000)  # huggingface_hub reports per 10 MB read: progress at 10, 20 and 25 MB
    hub = serve({HUB_FILE: weights})
    try:
        hf_home = tmp_path / "hf"
        for key, value in {"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_XET": "1",
                           "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}.items():
            monkeypatch.setenv(key, value)  # the engine inherits them (engine_runtime.engine_environ keeps HF_*)
        bar = plugin.iface.messageBar()
        dock = _open(plugin, trained_tune["dataset_id"])
        _pick_template_and_backbone(dock)
        _pick_weights(dock, "Pre-trained (Hugging Face cache)")
        _tiny_form(dock, "weights-hub")
        bar.details.clear()
        dock.ui.dryRunButton.click()
        wait_for(lambda: dock.task is None, timeout=120)
        text = dock.ui.stageLabel.text()
        assert text.startswith("Failed: the pre-trained weights of timm_resnet18 are not in the Hugging Face "
                               "cache. Click Download beside Weights"), text
        assert dock.ui.stageLabel.styleSheet() == PROBLEM and "bold" in dock.ui.downloadButton.styleSheet()
        (_title, short, more, _level), = _critical(bar)
        assert "timm/resnet18.a1_in1k" in short and "model.safetensors" in short and str(hf_home) in more
        assert "Traceback" not in more

        # downloads off (the default): the click says where to allow them, and runs nothing
        bar.details.clear()
        dock.ui.downloadButton.click()
        assert dock.task is None
        assert "Settings > Allow downloads" in dock.ui.stageLabel.text()
        assert dock.ui.stageLabel.styleSheet() == PROBLEM
        assert [d[3] for d in bar.details] == [Qgis.MessageLevel.Warning]
        assert "Settings > Allow downloads" in bar.details[0][1]

        settings.set_allow_downloads(True)
        hub.delay_s = 0.01  # 64 KB per 10 ms: cancelled in the middle, with the dock's Cancel
        dock.ui.downloadButton.click()
        assert dock.task is not None and dock.ui.cancelButton.isEnabled() and not dock.ui.dryRunButton.isEnabled()
        wait_for(lambda: "Downloading the timm_resnet18 weights: " in dock.ui.stageLabel.text(), timeout=60)
        dock.ui.cancelButton.click()
        wait_for(lambda: dock.task is None, timeout=60)
        assert dock.ui.stageLabel.text() == "Cancelled; nothing was changed."
        assert not list(hf_home.rglob("blobs/*")) if hf_home.exists() else True

        hub.delay_s = 0.0
        seen = []
        dock.ui.downloadButton.click()
        dock.task.eventReceived.connect(lambda _event: seen.append(dock.ui.stageLabel.text()))
        wait_for(lambda: dock.task is None, timeout=60)
        shown = [t for t in seen if t.startswith("Downloading the timm_resnet18 weights: ")]
        assert shown and shown[-1].endswith(" MB/s") and " of 25.0 MB at " in shown[-1], seen
        assert dock.ui.stageLabel.text() == ("The pre-trained weights of timm_resnet18 are in the Hugging Face cache "
                                             "(25.0 MB); Weights is set to Pre-trained."), dock.ui.stageLabel.text()
        assert dock.ui.weightsCombo.currentText() == "Pre-trained (Hugging Face cache)"
        assert [p.read_bytes() == weights for p in hf_home.rglob("blobs/*")] == [True]
        assert settings.weights_choice("timm_resnet18") == "pretrained"

        record = _dry_run(dock)  # now found in the cache
        assert record["weights"]["origin"] == "hub_cache" and record["weights"]["repo_id"] == "timm/resnet18.a1_in1k"
    finally:
        stop(hub)


# ------------------------------------------------------------------ Models: card, export, import, delete
@pytest.mark.engine_bound
def test_export_then_import_gives_a_second_model_and_delete_asks_first(plugin, trained_tune, tmp_path, monkeypatch):
    from qgis.core import Qgis, QgsTask
    from qgis.PyQt.QtWidgets import QFileDialog, QMessageBox

    from geostudio_plugin import settings

    bar = plugin.iface.messageBar()
    dock = _open(plugin, trained_tune["dataset_id"])
    dock.ui.tuneList.setCurrentRow(_row_of(dock, trained_tune["tune_id"]))
    menu = {a.text(): a for a in dock.ui.modelsButton.menu().actions() if a.text()}
    assert list(menu) == ["Export model…", "Import model…", "Model card", "Delete…"]
    assert all(action.isEnabled() for action in menu.values())

    menu["Model card"].trigger()
    card = dock.text_dialog
    assert card.isVisible() and card.editor.isReadOnly()
    assert card.text().startswith(f"# Model card: tiny-test (`{trained_tune['tune_id']}`)")
    assert "| Weights | random |" in card.text()
    card.close()

    saved = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *args: saved.append(Path(args[2]).name) or (str(tmp_path / "shared" / "water"), ""))
    (tmp_path / "shared").mkdir()
    menu["Export model…"].trigger()
    assert saved == ["tiny-test.zip"]  # the default name
    assert not menu["Delete…"].isEnabled() and not menu["Import model…"].isEnabled()  # one job at a time
    wait_for(lambda: dock.task is None, timeout=60)
    archive = tmp_path / "shared" / "water.zip"
    assert zipfile.ZipFile(archive).read("tune.json")
    assert f"GeoStudio:Model tiny-test exported to {archive} (" in bar.messages[Qgis.MessageLevel.Success][-1]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: (str(archive), "GeoStudio model (*.zip)"))
    before = {dock.ui.tuneList.item(i).toolTip() for i in range(dock.ui.tuneList.count())}
    menu["Import model…"].trigger()
    wait_for(lambda: dock.task is None, timeout=120)
    assert dock.ui.stageLabel.text().startswith("Imported model tiny-test as "), dock.ui.stageLabel.text()
    new = {dock.ui.tuneList.item(i).toolTip() for i in range(dock.ui.tuneList.count())} - before
    assert len(new) == 1
    imported = new.pop()
    assert dock.ui.tuneList.currentRow() == _row_of(dock, imported)  # selected
    assert dock.ui.tuneList.currentItem().text().startswith("tiny-test — timm_resnet18 — Finished")
    assert menu["Export model…"].isEnabled() and menu["Model card"].isEnabled()  # a finished model like the other

    questions = []
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", lambda *args: questions.append(args[2]) or answer)
    menu["Delete…"].trigger()
    assert questions and imported in questions[-1] and dock.task is None
    assert _row_of(dock, imported) >= 0 and (settings.workspace() / "tunes" / imported).is_dir()
    answer = QMessageBox.StandardButton.Yes
    menu["Delete…"].trigger()
    wait_for(lambda: dock.task is None, timeout=60)
    assert dock.ui.stageLabel.text() == f"Deleted {imported}."
    assert _row_of(dock, imported) == -1 and not (settings.workspace() / "tunes" / imported).exists()
    assert _row_of(dock, trained_tune["tune_id"]) >= 0

    # the Studio's form: config_deploy.yaml, then its checkpoint; cancelled in the dock before it lands
    tune_dir = settings.workspace() / "tunes" / trained_tune["tune_id"]
    answers = [str(tune_dir / "config_deploy.yaml"), str(tune_dir / trained_tune["checkpoint"])]
    titles = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args: titles.append(args[1]) or (answers.pop(0), ""))
    rows = dock.ui.tuneList.count()
    menu["Import model…"].trigger()
    assert titles == ["Import model", "The checkpoint that goes with config_deploy.yaml"]
    assert dock.task.job.spec == {"tune_config_url": str(tune_dir / "config_deploy.yaml"),
                                  "tune_checkpoint_url": str(tune_dir / trained_tune["checkpoint"])}
    wait_for(lambda: dock.task.status() == QgsTask.TaskStatus.Running, timeout=30)
    dock.ui.cancelButton.click()
    wait_for(lambda: dock.task is None, timeout=60)
    assert dock.ui.stageLabel.text() == "Cancelled; nothing was changed." and dock.ui.tuneList.count() == rows


# ------------------------------------------------------------------ Templates: import, export, delete
def _fill_dialog(monkeypatch, path: Path, schema: Path | None = None, purpose: str = "") -> None:
    """Answer the Import template dialog as a person does: pick the file (the name follows), maybe a purpose and a
    schema."""
    from qgis.PyQt.QtWidgets import QDialog

    from geostudio_plugin.gui.template_import_dialog import TemplateImportDialog

    def answer(dialog) -> int:
        dialog.fileWidget.setFilePath(str(path))
        assert dialog.name() == path.name.split(".")[0].replace("_", " ")  # named after the file
        if purpose:
            dialog.purposeCombo.setCurrentIndex(dialog.purposeCombo.findText(purpose))
        if schema is not None:
            dialog.schemaWidget.setFilePath(str(schema))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(TemplateImportDialog, "exec", answer)


@pytest.mark.engine_bound
def test_a_template_imported_from_the_dock_is_listed_picked_exported_and_deleted(plugin, trained_tune, tmp_path,
                                                                                 monkeypatch):
    from qgis.PyQt.QtWidgets import QFileDialog, QMessageBox

    from geostudio_plugin import settings

    bar = plugin.iface.messageBar()
    tune_dir = settings.workspace() / "tunes" / trained_tune["tune_id"]
    text = (tune_dir / "config.yaml").read_text().replace(str(tune_dir), "{{ run_dir }}")
    text = text.replace("  max_epochs: 1\n", "  max_epochs: {{ runner.max_epochs }}\n", 1)
    assert "{{ runner.max_epochs }}" in text
    schema = tmp_path / "water.schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"runner": {"type": "object", "properties": {
        "max_epochs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 3,
                       "studio_name": "Training epochs"}}}}}))
    dock = _open(plugin, trained_tune["dataset_id"])
    menu = {a.text(): a for a in dock.ui.templateMenuButton.menu().actions()}
    _pick_template_and_backbone(dock)
    assert menu["Export template…"].isEnabled() and not menu["Delete template…"].isEnabled()  # a built-in

    # a template that does not render: the engine's reason, in the label and the bar
    bad = tmp_path / "broken_water.yaml"
    bad.write_text(text.replace("{{ run_dir }}", "{{ run_dir }", 1))
    _fill_dialog(monkeypatch, bad)
    bar.details.clear()
    menu["Import template…"].trigger()
    wait_for(lambda: dock.task is None, timeout=60)
    label = dock.ui.stageLabel.text()
    assert label.startswith("Failed: Jinja syntax error at line ") and "{{ run_dir }" in label, label
    assert dock.ui.stageLabel.styleSheet() == PROBLEM
    assert [d[1] for d in _critical(bar)] and "Jinja syntax error" in _critical(bar)[0][1]
    assert dock.ui.templateCombo.findText("broken water") == -1

    good = tmp_path / "my_water.yaml.j2"
    good.write_text(text)
    _fill_dialog(monkeypatch, good, schema, "Segmentation")
    menu["Import template…"].trigger()
    assert dock.task is not None
    wait_for(lambda: dock.task is None, timeout=120)
    assert dock.ui.stageLabel.text() == "Template my water imported (Segmentation) and picked above.", \
        dock.ui.stageLabel.text()
    wait_for(lambda: dock.ui.templateCombo.currentText() == "my water", timeout=60)  # the catalog reloaded
    template_id = dock.ui.templateCombo.currentData()
    assert dock.template()["user_defined"] is True
    assert list(dock.form.fields) == ["runner.max_epochs"] and dock.form.field("runner.max_epochs").value() == 1
    assert dock.ui.backboneCombo.currentData() == "timm_resnet18"
    assert menu["Delete template…"].isEnabled()

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(tmp_path / "shared-water"),
                                                                       "Template zip (*.zip)"))
    menu["Export template…"].trigger()
    wait_for(lambda: dock.task is None, timeout=60)
    exported = tmp_path / "shared-water.zip"
    assert sorted(zipfile.ZipFile(exported).namelist()) == ["content.yaml.j2", "template.json"]
    assert dock.ui.stageLabel.text() == f"Template my water exported to {exported}."

    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    menu["Delete template…"].trigger()
    wait_for(lambda: dock.task is None, timeout=60)
    assert dock.ui.stageLabel.text() == f"Deleted template {template_id}."
    wait_for(lambda: dock.ui.templateCombo.findData(template_id) == -1, timeout=60)
    assert dock.ui.templateCombo.currentData() == "timm_resnet_seg"
