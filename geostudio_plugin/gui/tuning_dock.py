"""Fine-tuning dock: dataset, template and a compatible backbone with its starting weights, the template's parameters
as a form, Start / Dry run / Cancel, live metrics and curve, and the workspace's tunes (status, key metric, duration,
log) with Duplicate and Resume. Download weights, the Models menu and the template menu are in tuning_actions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFont, QFontInfo
from qgis.PyQt.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QListWidgetItem, QMessageBox,
                                 QTableWidgetItem, QVBoxLayout, QWidget)

from .. import contract, settings, tasks, workspace_index
from ..engine.workspace import Workspace  # standard library only, no engine dependency
from .base import UiDock
from .catalog_store import CatalogStore
from .curve import CurveWidget
from .messages import show_success
from .parameter_form import ParameterForm
from . import weights_choice
from .tuning_actions import TuningActions

# Metrics worth a row in the dock; the full set is in the tune's metrics.csv.
SHOWN_METRICS = ("train/loss", "val/loss", "val/mIoU", "val/Pixel_Accuracy", "val/RMSE", "test/mIoU", "test/RMSE")
# The one number a tune is judged by in the list: the first of these its record has (test split, else validation).
KEY_METRICS = ("test/mIoU", "test/RMSE", "val/mIoU", "val/RMSE", "val/loss")
FORM = ("nameEdit", "datasetCombo", "templateCombo", "backboneCombo", "weightsCombo", "deviceCombo")  # locked while a job runs
PROBLEM_STYLE = "color: #b2182b;"
STATUS_TEXT = {contract.TUNE_DRY_RUN: "Dry run"}


def shown_name(name: str) -> str:
    """A tune's name as the engine keeps it (the Studio's rule: spaces and '_' become '-')."""
    return re.sub(r"[\s_]+", "-", name.strip())


def duration(seconds: Optional[float]) -> str:
    """42 s, 3 min 05 s, 1 h 02 min."""
    total = int(round(float(seconds or 0)))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


def key_metric(record: dict[str, Any]) -> Optional[tuple[str, float]]:
    last = (record.get("history") or [{}])[-1]
    for name in KEY_METRICS:
        value = (record.get("test_metrics") or {}).get(name, last.get(name))
        if value is not None:
            return name, float(value)
    return None


def history_text(record: dict[str, Any]) -> str:
    """Two lines: name, backbone, status; then the key metric, epochs and duration."""
    status = STATUS_TEXT.get(record.get("status", ""), record.get("status") or "?")
    first = f"{record.get('name', '?')} — {record.get('base_model_id', '?')} — {status}"
    if record.get("status") == contract.TUNE_DRY_RUN:
        return f"{first}\n    config only, nothing trained"
    facts = []
    metric = key_metric(record)
    if metric:
        facts.append(f"{metric[0]} {metric[1]:.3f}")
    planned = ((record.get("model_parameters") or {}).get("runner") or {}).get("max_epochs")
    epochs = record.get("epochs_run", 0)
    facts.append(f"{epochs}/{planned} epochs" if planned and planned != epochs else
                 f"{epochs} epoch{'' if epochs == 1 else 's'}")
    if record.get("status") != contract.TUNE_RUNNING:
        facts.append(duration(record.get("seconds")))
    return f"{first}\n    " + " · ".join(facts)


CPU_FRIENDLY_TEMPLATE = "timm_resnet_seg"  # preselected: ResNet-18 trains in minutes on a CPU


class TextDialog(QDialog):
    """A read-only text (a rendered config, a tune's log) in QGIS's code editor: monospace, line numbers, and
    YAML highlighting from QScintilla's YAML lexer where PyQt has it."""

    def __init__(self, title: str, text: str, yaml: bool = False, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        from qgis.gui import QgsCodeEditor

        self.setObjectName("tuningTextDialog")
        self.setWindowTitle(title)
        self.resize(760, 560)
        layout = QVBoxLayout(self)
        self.editor = QgsCodeEditor(self)
        self.editor.setObjectName("textView")
        font = self.monospace(QgsCodeEditor.getMonospaceFont())
        self.editor.setFont(font)
        if yaml:
            try:
                from qgis.PyQt.Qsci import QsciLexerYAML
            except ImportError:  # PyQt without QScintilla's YAML lexer: plain monospace text
                QsciLexerYAML = None  # noqa: N806
            if QsciLexerYAML is not None:
                lexer = QsciLexerYAML(self.editor)
                lexer.setDefaultFont(font)
                lexer.setFont(font, -1)
                self.editor.setLexer(lexer)
        self.editor.setText(text)
        self.editor.setReadOnly(True)
        layout.addWidget(self.editor)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)

    def text(self) -> str:
        return self.editor.text()

    @staticmethod
    def monospace(font: QFont) -> QFont:
        """QGIS's code font, unless the platform answered with a proportional one (Qt's offscreen platform does)."""
        if QFontInfo(font).fixedPitch():
            return font
        fixed = QFont("Monospace", font.pointSize())
        fixed.setStyleHint(QFont.StyleHint.TypeWriter)
        fixed.setFixedPitch(True)
        return fixed


class TuningDock(UiDock, TuningActions):
    UI_FILE = "tuning_dock.ui"
    HELP_SECTION = "fine-tuning"  # README: The docks > fine-tuning
    TITLE = "Fine-tuning"
    OBJECT_NAME = "GeoStudioTuningDock"
    RUN_BUTTON = ("startButton", "dryRunButton")
    CANCEL_BUTTON = "cancelButton"
    TOOLTIPS = {
        "nameEdit": "The tune's name: 4 to 30 letters, digits, '-' or '.' (spaces and '_' become '-')",
        "datasetCombo": "An onboarded dataset from the Datasets tab",
        "templateCombo": "The task template (segmentation, regression...): decoder, losses, metrics and the "
                         "parameters below",
        "backboneCombo": "A pre-trained backbone that fits the template (size in millions of parameters)",
        "startButton": "Start fine-tuning in the background; metrics and the loss curve appear as epochs end",
        "dryRunButton": "Render the full TerraTorch config for these choices and show it; nothing is trained",
        "cancelButton": "Stop the running tune; after its first epoch it is kept as Cancelled with its last "
                        "checkpoint, and Resume continues it",
        "tuneList": "The workspace's tunes: status, key metric, epochs, duration; select one for its metrics and "
                    "curve",
        "duplicateButton": "Fill the form with the selected tune's dataset, template, backbone and parameters",
        "resumeButton": "Continue the selected Cancelled or Failed tune from its last checkpoint to its planned "
                        "epochs",
        "logButton": "The selected tune's log (a dry run: its rendered config)",
        "downloadButton": "Download the backbone's published pre-trained weights into the Hugging Face cache "
                          "(Settings > Allow downloads must be on); Cancel stops it",
        "modelsButton": "Export, import, delete a tuned model, or read its model card",
        "templateMenuButton": "Import your own template, export or delete one",
    }

    def __init__(self, iface, store: CatalogStore, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.store = store
        self.backbones: list[contract.BackboneEntry] = []
        self.templates: dict[str, contract.TemplateEntry] = {}  # by id (a combo's item data would sort its keys)
        self.text_dialog: Optional[TextDialog] = None  # the last config or log shown
        self._kept: Optional[dict[str, Any]] = None  # the tune a cancelled or failed run kept
        self._running_name = self._running_backbone = ""
        self._build_actions()  # weights choice, Download, the Models and template menus
        self.ui.deviceCombo.setCurrentText(settings.device())  # the Settings' device; this tune may differ
        layout = self.ui.layout()
        self.form = ParameterForm(self.ui)
        layout.insertWidget(layout.indexOf(self.ui.parametersLabel) + 1, self.form)
        self.curve = CurveWidget(self.ui)  # the loss per epoch, under the metrics table
        layout.insertWidget(layout.indexOf(self.ui.metricsTable) + 1, self.curve)
        header = self.ui.metricsTable.horizontalHeader()  # the metric's name takes the room the numbers leave
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.ui.metricsTable.verticalHeader().setVisible(False)
        self.ui.tuneList.setWordWrap(True)  # two lines per tune, wrapped in a narrow panel rather than cut
        self.ui.tuneList.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.setStretchFactor(self.ui.tuneList, 1)  # a taller panel gives the room to the history
        store.changed.connect(self.populate_catalog)
        self.ui.templateCombo.currentIndexChanged.connect(self._template_changed)
        self.ui.startButton.clicked.connect(self.start_tuning)
        self.ui.dryRunButton.clicked.connect(self.dry_run)
        self.ui.duplicateButton.clicked.connect(self.duplicate_selected)
        self.ui.resumeButton.clicked.connect(self.resume_selected)
        self.ui.logButton.clicked.connect(self.show_log)
        self.ui.nameEdit.textChanged.connect(lambda _text: self.check_name())
        self.form.changed.connect(self._update_buttons)
        self.ui.tuneList.currentItemChanged.connect(lambda current, _previous: self.show_tune(current))
        self.visibilityChanged.connect(self._on_visible)
        self._backbone_changed()

    def _on_visible(self, visible: bool) -> None:
        if visible:
            self.refresh_workspace()
            self.store.load()

    # ------------------------------------------------------------ lists
    def refresh_workspace(self) -> None:
        current = self.ui.datasetCombo.currentData()
        self.ui.datasetCombo.clear()
        for record in workspace_index.datasets():
            self.ui.datasetCombo.addItem(f"{record['dataset_name']} ({record['dataset_id']})", record["dataset_id"])
        if current:
            self.ui.datasetCombo.setCurrentIndex(max(self.ui.datasetCombo.findData(current), 0))
        self.ui.tuneList.clear()
        if self.task is not None and self._running_name:  # the run under way, above the kept ones
            self._add_running_row()
        for record in workspace_index.tunes():
            item = QListWidgetItem(history_text(record))
            item.setToolTip(record["tune_id"])
            item.setData(Qt.ItemDataRole.UserRole, record)
            self.ui.tuneList.addItem(item)
        if self.task is None and self.ui.tuneList.count():
            self.ui.tuneList.setCurrentRow(0)
        self._update_buttons()

    def _add_running_row(self) -> None:
        item = QListWidgetItem(f"{self._running_name} — {self._running_backbone} — Running\n"
                               f"    {self.ui.stageLabel.text()}")
        item.setData(Qt.ItemDataRole.UserRole, {"status": contract.TUNE_RUNNING, "name": self._running_name})
        item.setToolTip("running now")
        self.ui.tuneList.insertItem(0, item)

    def selected_record(self) -> Optional[contract.TuneRecord]:
        item = self.ui.tuneList.currentItem()
        record = item.data(Qt.ItemDataRole.UserRole) if item else None
        return record if record and record.get("tune_id") else None

    def show_tune(self, item: Optional[QListWidgetItem]) -> None:
        """A kept tune's metrics (its last epoch and its test split) and its curve."""
        self._update_buttons()
        record: Optional[contract.TuneRecord] = item.data(Qt.ItemDataRole.UserRole) if item else None
        if not record or not record.get("tune_id") or self.task is not None:
            return
        self.ui.metricsTable.setRowCount(0)
        self.curve.clear()
        self._draw_history(record)
        last = (record.get("history") or [{}])[-1]
        for name in SHOWN_METRICS:
            value = (record.get("test_metrics") or {}).get(name, last.get(name))
            if value is not None:
                epoch = None if name.startswith("test/") else int(last.get("epoch", 0))
                self._set_metric(name, float(value), epoch)
        self._say(self._summary(record), problem=record.get("status") == contract.TUNE_FAILED)

    def _draw_history(self, record: dict[str, Any]) -> None:
        for entry in record.get("history") or []:
            for name in self.curve.names:
                if entry.get(name) is not None:
                    self.curve.add(name, int(entry.get("epoch", 0)), float(entry[name]))

    @staticmethod
    def _summary(record: dict[str, Any]) -> str:
        status = record.get("status")
        if status == contract.TUNE_DRY_RUN:
            return f"{record['tune_id']}: a dry run; Log shows its rendered config."
        epochs = record.get("epochs_run", 0)
        text = (f"{record['tune_id']}: {epochs} epoch{'' if epochs == 1 else 's'} on "
                f"{record.get('device') or '?'} in {duration(record.get('seconds'))}")
        if status == contract.TUNE_FAILED:
            error = record.get("error") or {}
            text = f"{text}; Failed: {error.get('message', 'see its log')}"
        elif status == contract.TUNE_CANCELLED:
            text = f"{text}; Cancelled"
        if contract.is_resumable(record):
            text += " (Resume continues it)"
        return text

    def populate_catalog(self, catalog: dict[str, Any]) -> None:
        self.backbones = catalog.get("backbones", [])
        current = self.ui.templateCombo.currentData()
        self.templates = {t["id"]: t for t in catalog.get("templates", [])}
        self.ui.templateCombo.blockSignals(True)
        self.ui.templateCombo.clear()
        for template in self.templates.values():
            self.ui.templateCombo.addItem(template["name"], template["id"])
        index = self.ui.templateCombo.findData(current) if current else -1
        if index < 0:  # first visit: the template that trains in minutes on a CPU (Clay or Prithvi-300M take hours)
            index = self.ui.templateCombo.findData(CPU_FRIENDLY_TEMPLATE)
        self.ui.templateCombo.setCurrentIndex(max(index, 0) if self.ui.templateCombo.count() else -1)
        self.ui.templateCombo.blockSignals(False)
        self._template_changed()
        self._select_pending_template()

    def template(self) -> dict[str, Any]:
        """The chosen template's catalog entry (with its parameter schema), or {}."""
        return dict(self.templates.get(self.ui.templateCombo.currentData() or "", {}))

    def _template_changed(self) -> None:
        """Backbones of the template's model category, and its parameters (changed values kept by path)."""
        self._filter_backbones()
        self.form.set_schema(self.template().get("model_params") or {})
        self._update_buttons()

    def _filter_backbones(self) -> None:
        """The Studio's compatibility rule: same model category as the template."""
        template = self.template()
        current = self.ui.backboneCombo.currentData()
        self.ui.backboneCombo.clear()
        if not template:
            return
        category = template["extra_info"]["model_category"]
        for backbone in self.backbones:
            if backbone["model_params"]["model_category"] == category:
                self.ui.backboneCombo.addItem(f"{backbone['name']} ({backbone['params_m']:g} M)", backbone["name"])
        if current:
            self.ui.backboneCombo.setCurrentIndex(max(self.ui.backboneCombo.findData(current), 0))

    # -------------------------------------------------------------- run
    def build_payload(self) -> dict[str, Any]:
        """Raises ValueError when the device is outside the device vocabulary."""
        template = self.template()
        return contract.tune_spec(
            self.ui.nameEdit.text().strip() or "my-tune", self.ui.datasetCombo.currentData() or "",
            self.ui.backboneCombo.currentData() or "", template.get("id", ""),
            model_parameters=self.form.values(), device=self.ui.deviceCombo.currentText(),
            weights=self.weights.value())

    def check_name(self) -> str:
        """A bad name is said as it is typed, naming the characters that are not allowed."""
        problem = contract.tune_name_problem(self.ui.nameEdit.text()) if self.ui.nameEdit.text().strip() else ""
        self.ui.nameEdit.setStyleSheet("border: 1px solid #b2182b;" if problem else "")
        if self.task is None and (problem or self.ui.stageLabel.styleSheet()):
            self._say(problem, problem=bool(problem))
        self._update_buttons()
        return problem

    def blocking_problem(self) -> str:
        """What keeps Start and Dry run from running, as the user reads it ("" when nothing does)."""
        name = contract.tune_name_problem(self.ui.nameEdit.text()) if self.ui.nameEdit.text().strip() else ""
        if name:
            return name
        problems = self.form.problems()
        if problems:
            return next(iter(problems.values()))
        if not self.ui.datasetCombo.currentData():
            return "Pick a dataset (onboard one in the Datasets tab first)."
        if not self.ui.templateCombo.currentData() or not self.ui.backboneCombo.currentData():
            return "Pick a template and a backbone."
        return ""

    def _update_buttons(self) -> None:
        idle = self.task is None
        blocked = self.blocking_problem()
        for button in (self.ui.startButton, self.ui.dryRunButton):
            button.setEnabled(idle and not blocked)
        self.ui.startButton.setToolTip(self.TOOLTIPS["startButton"] + (f"\nNot now: {blocked}" if blocked else ""))
        record = self.selected_record()
        self.ui.duplicateButton.setEnabled(idle and record is not None)
        self.ui.resumeButton.setEnabled(idle and record is not None and contract.is_resumable(record))
        self.ui.logButton.setEnabled(record is not None and self._log_path(record) is not None)
        self.ui.logButton.setText("Config" if record and record.get("status") == contract.TUNE_DRY_RUN else "Log")
        self._update_actions(idle, record)

    def start_tuning(self) -> Optional[tasks.EngineTask]:
        if self.task is not None or self.check_name() or self.form.problems():
            return None
        try:
            payload = self.build_payload()
        except ValueError as exc:
            QMessageBox.warning(self, "GeoStudio", str(exc))
            return None
        return self._run(payload, f"GeoStudio: fine-tune {payload['name']}",
                         f"{shown_name(payload['name'])}: starting…")

    def dry_run(self) -> Optional[tasks.EngineTask]:
        """The full config for the form's choices, rendered by the engine and shown read-only."""
        if self.task is not None or self.check_name() or self.form.problems():
            return None
        try:
            payload = contract.tune_dry_run_spec(self.build_payload())
        except ValueError as exc:
            QMessageBox.warning(self, "GeoStudio", str(exc))
            return None
        task = self.start_engine_task(f"GeoStudio: dry run {payload['name']}", contract.TUNE, payload,
                                      self._dry_run_done, on_failure=self._failed)
        if task is not None:
            self._say(f"{shown_name(payload['name'])}: rendering the config…")
        return task

    def resume_selected(self) -> Optional[tasks.EngineTask]:
        """Continue the selected Cancelled or Failed tune from its last checkpoint; its curve continues."""
        record = self.selected_record()
        if self.task is not None or record is None or not contract.is_resumable(record):
            return None
        try:
            payload = contract.tune_resume_spec(record, self.ui.deviceCombo.currentText())
        except ValueError as exc:
            QMessageBox.warning(self, "GeoStudio", str(exc))
            return None
        planned = ((record.get("model_parameters") or {}).get("runner") or {}).get("max_epochs", "?")
        task = self._run(payload, f"GeoStudio: resume {record['name']}",
                         f"{record['name']}: resuming after epoch {record.get('epochs_run', 0)} of {planned}…")
        if task is not None:
            self._draw_history(record)  # the resumed run's epochs continue this curve
        return task

    def _run(self, payload: dict[str, Any], description: str, saying: str) -> Optional[tasks.EngineTask]:
        self._kept = None
        task = self.start_engine_task(description, contract.TUNE, payload, self._done, on_event=self._on_event,
                                      on_failure=self._failed)
        if task is not None:  # the metrics shown are this run's: no kept tune stays highlighted
            self.ui.metricsTable.setRowCount(0)
            self.curve.clear()
            self.ui.tuneList.setCurrentRow(-1)
            self._say(saying)
            self._running_name, self._running_backbone = shown_name(payload["name"]), payload["base_model_id"]
            self._add_running_row()
            self.ui.tuneList.setCurrentRow(-1)
        return task

    def duplicate_selected(self) -> bool:
        """The selected tune's dataset, template, backbone and parameters in the form, named <name>-copy."""
        record = self.selected_record()
        if record is None or self.task is not None:
            return False
        notes = []
        dataset = self.ui.datasetCombo.findData(record.get("dataset_id"))
        if dataset >= 0:
            self.ui.datasetCombo.setCurrentIndex(dataset)
        else:
            notes.append(f"its dataset {record.get('dataset_id')} is no longer in the workspace")
        template = self.ui.templateCombo.findData(record.get("tune_template_id", ""))
        if template < 0:
            self._say(f"Cannot duplicate {record['name']}: its template {record.get('tune_template_id')} is not in "
                      "the catalog.", problem=True)
            return False
        self.ui.templateCombo.setCurrentIndex(template)
        self._template_changed()  # rebuilt even when the template was already the current one
        backbone = self.ui.backboneCombo.findData(record.get("base_model_id"))
        if backbone >= 0:
            self.ui.backboneCombo.setCurrentIndex(backbone)
        else:
            notes.append(f"its backbone {record.get('base_model_id')} does not fit this template")
        if backbone >= 0:  # its starting weights too (a file that is gone is said)
            notes.extend(self._duplicate_weights(record.get("weights") or {}))
        unused = self.form.set_values(record.get("model_parameters") or {})
        if unused:
            notes.append("not in this template: " + ", ".join(unused))
        self.ui.nameEdit.setText(f"{str(record['name'])[:25]}-copy")
        self._say(f"Duplicated {record['name']}" + (f" ({'; '.join(notes)})." if notes else ": change what you "
                                                    "like and Start."), problem=bool(notes))
        self._update_buttons()
        return True

    def _duplicate_weights(self, weights: dict[str, Any]) -> list[str]:
        """Select the weights a tune started from (its record's ``weights.origin``); notes when that cannot be."""
        origin, path = weights.get("origin"), str(weights.get("path") or "")
        if origin == "file":
            if not Path(path).is_file():
                return [f"its starting checkpoint {path} is gone"]
            self.weights.choose(weights_choice.FILE, path)
        elif origin == "hub_cache":
            self.weights.choose(weights_choice.PRETRAINED)
        elif origin == "random":
            self.weights.choose(weights_choice.RANDOM)
        return []

    def _log_path(self, record: dict[str, Any]) -> Optional[Path]:
        name = "config.yaml" if record.get("status") == contract.TUNE_DRY_RUN else record.get("log")
        if not name or not record.get("tune_id"):
            return None
        path = Workspace(Path(settings.workspace())).dir("tunes") / record["tune_id"] / str(name)
        return path if path.is_file() else None

    def show_log(self) -> Optional[TextDialog]:
        """The selected tune's log (a dry run's config), read-only."""
        record = self.selected_record()
        path = self._log_path(record) if record else None
        if path is None:
            return None
        yaml = path.suffix == ".yaml"
        text = path.read_text(encoding="utf-8", errors="replace")
        return self._show_text(f"{'Config' if yaml else 'Log'} of {record['tune_id']}", text, yaml)

    def _show_text(self, title: str, text: str, yaml: bool) -> TextDialog:
        if self.text_dialog is not None:
            self.text_dialog.close()
        self.text_dialog = TextDialog(title, text, yaml, self)
        self.text_dialog.show()
        return self.text_dialog

    def _say(self, text: str, problem: bool = False) -> None:
        self.ui.stageLabel.setText(text)
        self.ui.stageLabel.setStyleSheet(PROBLEM_STYLE if problem else "")

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        for name in FORM:
            getattr(self.ui, name).setEnabled(not running)
        self.form.setEnabled(not running)
        if not running:
            self._running_name = ""
        self._update_buttons()

    def _failed(self, failure: contract.EngineFailure) -> None:
        """A run that ended without a result: the tune it kept (after an epoch) is listed and selected, Resume
        continues it; when nothing was kept its numbers go and the label says why."""
        kept, self._kept = self._kept, None
        self.refresh_workspace()
        self.ui.tuneList.setCurrentRow(-1)
        self.ui.metricsTable.setRowCount(0)
        self.curve.clear()
        if kept:
            self._select(str(kept.get("id")))
        done = f"after {kept.get('epochs_run', '?')} of {kept.get('planned_epochs', '?')} epochs" if kept else ""
        if failure.code == "weights_missing":
            self.offer_download(failure)
        elif failure.cancelled:
            self._say(f"Cancelled {done}; kept as {kept.get('status', 'Cancelled')} with its last checkpoint: "
                      "Resume continues it." if kept else
                      "Cancelled before the first epoch ended: nothing was kept.")
        else:
            self._say(f"Failed: {failure.message} {failure.hint}".strip()
                      + (f" (kept {done}: Resume continues it)" if kept else ""), problem=True)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self.task is None:  # a late event of a run that has ended
            return
        kept = contract.kept_item(event)
        if kept:
            self._kept = kept
        if contract.is_progress(event):
            self._say(str(event.get("message", "")))
            running = self.ui.tuneList.item(0)
            if running is not None and (running.data(Qt.ItemDataRole.UserRole) or {}).get("status") == "Running":
                running.setText(f"{running.text().splitlines()[0]}\n    {event.get('message', '')}")
        elif contract.is_metric(event) and event.get("name") in SHOWN_METRICS:
            self._set_metric(event["name"], float(event["value"]), event.get("epoch"))
            if event.get("epoch") is not None:
                self.curve.add(event["name"], int(event["epoch"]), float(event["value"]))

    def _set_metric(self, name: str, value: float, epoch: Optional[int]) -> None:
        table = self.ui.metricsTable
        rows = [table.item(r, 0).text() for r in range(table.rowCount())]
        row = rows.index(name) if name in rows else table.rowCount()
        if row == table.rowCount():
            table.insertRow(row)
            table.setItem(row, 0, QTableWidgetItem(name))
        table.setItem(row, 1, QTableWidgetItem(f"{value:.4f}"))
        table.setItem(row, 2, QTableWidgetItem("" if epoch is None else str(epoch + 1)))

    def _select(self, tune_id: str) -> bool:
        for row in range(self.ui.tuneList.count()):
            record = self.ui.tuneList.item(row).data(Qt.ItemDataRole.UserRole) or {}
            if record.get("tune_id") == tune_id:
                self.ui.tuneList.setCurrentRow(row)
                self.show_tune(self.ui.tuneList.item(row))
                return True
        return False

    def _done(self, result: dict[str, Any]) -> None:
        summary: contract.TuneSummary = result["summary"]
        best = summary.get("best_val_loss")
        show_success("GeoStudio", f"Tune {summary['tune_id']} finished on {summary.get('device')} in "
                     f"{duration(summary.get('seconds'))}" + (f" (best val/loss {best:.3f})." if best is not None
                                                             else "."))
        self.refresh_workspace()
        if self._select(summary["tune_id"]):  # the finished tune, highlighted, with its final metrics
            self._say(f"Done: {self.ui.stageLabel.text()}")

    def _dry_run_done(self, result: dict[str, Any]) -> None:
        summary: contract.TuneSummary = result["summary"]
        self.refresh_workspace()
        self._select(summary["tune_id"])
        self._say(f"Dry run {summary['tune_id']}: the rendered config is shown (and kept in the tune's folder); "
                  "nothing was trained.")
        self._show_text(f"Config of {summary['tune_id']} (dry run)", summary.get("config_text") or "", yaml=True)
