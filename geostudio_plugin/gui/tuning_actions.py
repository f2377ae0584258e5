"""The Fine-tuning dock's less frequent actions, each an engine task: Download weights (beside the Weights choice),
the Models menu under the tune history (Export model…, Import model…, Model card, Delete…) and the template menu
beside the Template choice (Import template…, Export template…, Delete template…).

A mixin of ``TuningDock``: it uses the dock's ``ui``, ``start_engine_task``, ``_say``, ``refresh_workspace``,
``_select``, ``selected_record``, ``template``, ``store`` and ``_show_text``. Each action captures what it needs
before its task starts; the engine's errors reach the stage label (problem style) and the message bar
(``UiDock._task_failed``), never as a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from qgis.PyQt.QtWidgets import QDialog, QFileDialog, QMenu, QMessageBox, QPushButton, QToolButton

from .. import contract, settings, tasks
from ..engine.workspace import Workspace  # standard library only, no engine dependency
from .messages import show_success, show_warning
from .template_import_dialog import TemplateImportDialog
from .weights_choice import PRETRAINED, WeightsChoice, download_text, human_bytes

MODEL_CARD = "MODEL_CARD.md"  # written by the engine beside tune.json (engine/tuning/model_card.py)
MODEL_FILTER = "GeoStudio model (*.zip)"
IMPORT_FILTER = ("GeoStudio model or Studio config_deploy.yaml (*.zip *.yaml *.yml);;GeoStudio model (*.zip);;"
                 "Studio config_deploy.yaml (*.yaml *.yml)")
STUDIO_CHECKPOINT_FILTER = "Checkpoints (*.ckpt *.pt *.pth *.safetensors);;All files (*)"
TEMPLATE_EXPORT_FILTER = "Template zip (*.zip);;Studio template JSON (*.json)"
DOWNLOADS_OFF = ("Downloads are off: turn on GeoStudio > Settings > Allow downloads, then click Download again "
                 "(or train from Random initialisation, or a local checkpoint).")
OFFER_STYLE = "font-weight: bold;"  # the Download button after a tune failed for want of weights


class TuningActions:
    """Weights, model and template actions of the Fine-tuning dock (see the module's docstring)."""

    def _build_actions(self) -> None:
        self.weights = WeightsChoice(self.ui.weightsCombo, self)
        self._downloading = ""  # the backbone whose weights are being downloaded
        self._pending_template = ""  # a template just imported: selected once the catalog has reloaded
        self.ui.downloadButton.clicked.connect(self.download_weights)
        self.ui.backboneCombo.currentIndexChanged.connect(lambda _index: self._backbone_changed())

        models = QMenu(self.ui.modelsButton)
        self.exportModelAction = models.addAction("Export model…")
        self.exportModelAction.setToolTip("The selected finished tune as one .zip (checkpoint, configs, model card) "
                                          "to share or import elsewhere")
        self.importModelAction = models.addAction("Import model…")
        self.importModelAction.setToolTip("A model .zip exported by GeoStudio, or the Studio's config_deploy.yaml "
                                          "and then its checkpoint")
        self.modelCardAction = models.addAction("Model card")
        self.modelCardAction.setToolTip("The selected finished tune's model card (data, bands, metrics, weights)")
        models.addSeparator()
        self.deleteModelAction = models.addAction("Delete…")
        self.deleteModelAction.setToolTip("Delete the selected tune and its files (asks first)")
        models.setToolTipsVisible(True)
        self.exportModelAction.triggered.connect(lambda _checked=False: self.export_model())
        self.importModelAction.triggered.connect(lambda _checked=False: self.import_model())
        self.modelCardAction.triggered.connect(lambda _checked=False: self.show_model_card())
        self.deleteModelAction.triggered.connect(lambda _checked=False: self.delete_selected())
        self._menu_button(self.ui.modelsButton, models)

        templates = QMenu(self.ui.templateMenuButton)
        self.importTemplateAction = templates.addAction("Import template…")
        self.importTemplateAction.setToolTip("Your own TerraTorch config as a template, checked against the "
                                             "dataset picked above")
        self.exportTemplateAction = templates.addAction("Export template…")
        self.exportTemplateAction.setToolTip("The template picked above as a .zip or the Studio's template .json")
        self.deleteTemplateAction = templates.addAction("Delete template…")
        self.deleteTemplateAction.setToolTip("Delete the template picked above (only templates you imported)")
        templates.setToolTipsVisible(True)
        self.importTemplateAction.triggered.connect(lambda _checked=False: self.import_template())
        self.exportTemplateAction.triggered.connect(lambda _checked=False: self.export_template())
        self.deleteTemplateAction.triggered.connect(lambda _checked=False: self.delete_template())
        self._menu_button(self.ui.templateMenuButton, templates)

    @staticmethod
    def _menu_button(button: "QPushButton | QToolButton", menu: QMenu) -> None:
        """The button opens its menu on a click (a QPushButton does so by itself)."""
        button.setMenu(menu)
        if isinstance(button, QToolButton):
            button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
            button.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0px; }")  # "…" says it

    def _update_actions(self, idle: bool, record: Optional[dict[str, Any]]) -> None:
        model = record is not None and contract.is_model(record)
        self.exportModelAction.setEnabled(idle and model)
        self.importModelAction.setEnabled(idle)
        self.modelCardAction.setEnabled(model and self._card_path(record) is not None)
        self.deleteModelAction.setEnabled(idle and record is not None
                                          and record.get("status") != contract.TUNE_RUNNING)
        template = self.template()
        self.importTemplateAction.setEnabled(idle)
        self.exportTemplateAction.setEnabled(idle and bool(template))
        self.deleteTemplateAction.setEnabled(idle and bool(template.get("user_defined")))
        self.ui.downloadButton.setEnabled(idle and bool(self.ui.backboneCombo.currentData()))

    def _action_failed(self, failure: contract.EngineFailure) -> None:
        """An action's engine error: the stage label says it (the message bar has it with details)."""
        if failure.cancelled:
            self._say("Cancelled; nothing was changed.")
        else:
            self._say(f"Failed: {failure.message} {failure.hint}".strip(), problem=True)

    # ------------------------------------------------------------------ weights
    def _backbone_changed(self) -> None:
        self.weights.show_backbone(self.ui.backboneCombo.currentData() or "")
        self.ui.downloadButton.setStyleSheet("")
        self._update_buttons()

    def offer_download(self, failure: contract.EngineFailure) -> None:
        """A tune that failed because the pre-trained weights are not in the cache: say so, point at Download."""
        backbone = self.ui.backboneCombo.currentData() or "this backbone"
        self._say(f"Failed: the pre-trained weights of {backbone} are not in the Hugging Face cache. Click Download "
                  "beside Weights to fetch them, or pick Random initialisation or a local checkpoint.", problem=True)
        self.ui.downloadButton.setStyleSheet(OFFER_STYLE)
        self.ui.downloadButton.setFocus()

    def download_weights(self) -> Optional[tasks.EngineTask]:
        """The backbone's published weights into the Hugging Face cache, as a cancellable task with its speed."""
        backbone = self.ui.backboneCombo.currentData() or ""
        if self.task is not None or not backbone:
            return None
        if not settings.allow_downloads():
            self._say(DOWNLOADS_OFF, problem=True)
            show_warning("GeoStudio", DOWNLOADS_OFF)
            return None
        task = self.start_engine_task(f"GeoStudio: download {backbone} weights", contract.WEIGHTS,
                                      contract.weights_spec(backbone), self._downloaded,
                                      on_event=self._download_event, on_failure=self._action_failed)
        if task is not None:
            self._downloading = backbone
            self.ui.downloadButton.setStyleSheet("")
            self._say(f"{backbone}: asking the hub for its pre-trained weights…")
        return task

    def _download_event(self, event: dict[str, Any]) -> None:
        if self.task is None or not contract.is_progress(event):
            return
        if event.get("stage") == "download" and "bytes" in event:
            self._say(f"Downloading the {self._downloading} weights: {download_text(event)}")
        else:
            self._say(str(event.get("message") or ""))

    def _downloaded(self, result: dict[str, Any]) -> None:
        summary = result["summary"]
        backbone, self._downloading = self._downloading, ""
        if self.ui.backboneCombo.currentData() == backbone:
            self.weights.choose(PRETRAINED)
        text = (f"The pre-trained weights of {backbone} are in the Hugging Face cache "
                f"({human_bytes(float(summary.get('bytes') or 0))}); Weights is set to Pre-trained.")
        self._say(text)
        show_success("GeoStudio", text)

    # ------------------------------------------------------------------ models
    def _tune_folder(self, record: dict[str, Any]) -> Path:
        return Workspace(Path(settings.workspace())).dir("tunes") / str(record.get("tune_id"))

    def _card_path(self, record: Optional[dict[str, Any]]) -> Optional[Path]:
        if not record or not record.get("tune_id"):
            return None
        path = self._tune_folder(record) / MODEL_CARD
        return path if path.is_file() else None

    def _start_folder(self) -> Path:
        folder = Path(settings.last_folder() or Path.home())
        return folder if folder.is_dir() else Path.home()

    def export_model(self) -> Optional[tasks.EngineTask]:
        record = self.selected_record()
        if self.task is not None or record is None or not contract.is_model(record):
            return None
        path, _ = QFileDialog.getSaveFileName(self, f"Export model {record['name']}",
                                              str(self._start_folder() / f"{record['name']}.zip"), MODEL_FILTER)
        if not path:
            return None
        path = path if path.lower().endswith(".zip") else f"{path}.zip"
        settings.set_last_folder(str(Path(path).parent))
        task = self.start_engine_task(f"GeoStudio: export model {record['name']}", contract.EXPORT_MODEL,
                                      contract.export_model_spec(record["tune_id"], path), self._exported,
                                      on_failure=self._action_failed)
        if task is not None:
            self._say(f"{record['name']}: writing {Path(path).name}…")
        return task

    def _exported(self, result: dict[str, Any]) -> None:
        summary = result["summary"]
        text = (f"Model {summary['name']} exported to {summary['archive']} "
                f"({human_bytes(float(summary.get('bytes') or 0))}).")
        self._say(text)
        show_success("GeoStudio", text)

    def import_model(self) -> Optional[tasks.EngineTask]:
        """Our .zip, or the Studio's config_deploy.yaml and then its checkpoint."""
        if self.task is not None:
            return None
        path, _ = QFileDialog.getOpenFileName(self, "Import model", str(self._start_folder()), IMPORT_FILTER)
        if not path:
            return None
        settings.set_last_folder(str(Path(path).parent))
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            checkpoint, _ = QFileDialog.getOpenFileName(self, f"The checkpoint that goes with {Path(path).name}",
                                                        str(Path(path).parent), STUDIO_CHECKPOINT_FILTER)
            if not checkpoint:
                return None
            spec = contract.import_studio_model_spec(path, checkpoint)
        else:
            spec = contract.import_model_spec(path)
        task = self.start_engine_task(f"GeoStudio: import model {Path(path).name}", contract.IMPORT_MODEL, spec,
                                      self._imported, on_failure=self._action_failed)
        if task is not None:
            self._say(f"Importing {Path(path).name}: checking that its checkpoint fits its config…")
        return task

    def _imported(self, result: dict[str, Any]) -> None:
        summary = result["summary"]
        self.refresh_workspace()
        self._select(str(summary["tune_id"]))
        notes = "; ".join(summary.get("notes") or [])
        text = f"Imported model {summary['name']} as {summary['tune_id']}" + (f" ({notes})." if notes else ".")
        self._say(text)
        show_success("GeoStudio", text)

    def show_model_card(self) -> Optional[Any]:
        """The selected finished tune's MODEL_CARD.md, read-only."""
        record = self.selected_record()
        path = self._card_path(record) if record and contract.is_model(record) else None
        if path is None:
            return None
        return self._show_text(f"Model card of {record['tune_id']}",
                               path.read_text(encoding="utf-8", errors="replace"), False)

    def delete_selected(self) -> Optional[tasks.EngineTask]:
        """Delete the selected tune after a confirmation (a running one cannot be: it is not selectable)."""
        record = self.selected_record()
        if self.task is not None or record is None or record.get("status") == contract.TUNE_RUNNING:
            return None
        answer = QMessageBox.question(
            self, "Delete tune", f"Delete {record['name']} ({record['tune_id']}) with its checkpoints, log and model "
            "card? This cannot be undone.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        task = self.start_engine_task(f"GeoStudio: delete {record['tune_id']}", contract.DELETE,
                                      contract.delete_spec("tunes", record["tune_id"]), self._deleted,
                                      on_failure=self._action_failed)
        if task is not None:
            self._say(f"Deleting {record['tune_id']}…")
        return task

    def _deleted(self, result: dict[str, Any]) -> None:
        self.refresh_workspace()
        self._say(f"Deleted {result['summary']['id']}.")

    # ------------------------------------------------------------------ templates
    def import_template(self) -> Optional[tasks.EngineTask]:
        """A template file (+ an optional parameter schema), checked by the engine against the picked dataset."""
        dataset = self.ui.datasetCombo.currentData()
        if self.task is not None:
            return None
        if not dataset:
            self._say("Pick a dataset first: an imported template is checked against it.", problem=True)
            return None
        dialog = TemplateImportDialog(self.ui.datasetCombo.currentText(), str(self._start_folder()), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        settings.set_last_folder(str(Path(dialog.path()).parent))
        spec = contract.template_import_spec(dialog.name(), dataset, path=dialog.path(),
                                             schema=dialog.schema() or None, purpose=dialog.purpose() or None)
        task = self.start_engine_task(f"GeoStudio: import template {dialog.name()}", contract.TEMPLATE_IMPORT, spec,
                                      self._template_imported, on_failure=self._action_failed)
        if task is not None:
            self._say(f"Checking template {dialog.name()}: rendering it for {dataset} and building its model…")
        return task

    def _template_imported(self, result: dict[str, Any]) -> None:
        summary = result["summary"]
        self._pending_template = str(summary["id"])
        self.store.load(force=True)  # the catalog lists it: populate_catalog selects it
        text = f"Template {summary['name']} imported ({summary.get('purpose', 'Other')}) and picked above."
        self._say(text)
        show_success("GeoStudio", text)

    def _select_pending_template(self) -> None:
        if not self._pending_template:
            return
        index = self.ui.templateCombo.findData(self._pending_template)
        if index >= 0:
            self._pending_template = ""
            self.ui.templateCombo.setCurrentIndex(index)

    def export_template(self) -> Optional[tasks.EngineTask]:
        template = self.template()
        if self.task is not None or not template:
            return None
        path, chosen = QFileDialog.getSaveFileName(self, f"Export template {template['name']}",
                                                   str(self._start_folder() / f"{template['id']}.zip"),
                                                   TEMPLATE_EXPORT_FILTER)
        if not path:
            return None
        if Path(path).suffix.lower() not in (".zip", ".json"):
            path = f"{path}{'.json' if 'json' in (chosen or '') else '.zip'}"
        settings.set_last_folder(str(Path(path).parent))
        task = self.start_engine_task(f"GeoStudio: export template {template['name']}", contract.TEMPLATE_EXPORT,
                                      contract.template_export_spec(template["id"], path), self._template_exported,
                                      on_failure=self._action_failed)
        if task is not None:
            self._say(f"Writing template {template['name']} to {Path(path).name}…")
        return task

    def _template_exported(self, result: dict[str, Any]) -> None:
        text = f"Template {result['summary']['name']} exported to {result['outputs']['path']}."
        self._say(text)
        show_success("GeoStudio", text)

    def delete_template(self) -> Optional[tasks.EngineTask]:
        template = self.template()
        if self.task is not None or not template.get("user_defined"):
            return None
        answer = QMessageBox.question(
            self, "Delete template", f"Delete your template {template['name']}? Tunes made with it keep their "
            "config; it leaves the Template list.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        task = self.start_engine_task(f"GeoStudio: delete template {template['name']}", contract.DELETE,
                                      contract.delete_spec("templates", template["id"]), self._template_deleted,
                                      on_failure=self._action_failed)
        if task is not None:
            self._say(f"Deleting template {template['name']}…")
        return task

    def _template_deleted(self, result: dict[str, Any]) -> None:
        self.store.load(force=True)
        self._say(f"Deleted template {result['summary']['id']}.")
