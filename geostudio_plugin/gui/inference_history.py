"""The Inference dock's list of the workspace's runs (issue 13): status and per-stage timings, Re-open (the run's
layers again, the map zoomed to them, Export map on), Details (the run's record, read-only) and Delete (asks
first; the run's layers leave the project before its folder goes). A mixin of InferenceDock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QListWidgetItem, QMessageBox

from .. import contract, layers, map_export, run_layers, settings, tasks, workspace_index
from ..engine.workspace import Workspace  # standard library only, no engine dependency
from . import run_history
from .tuning_dock import TextDialog

HISTORY_TOOLTIPS = {
    "runList": "The workspace's completed runs, newest first: model, place or input, status; dates or input, "
               "outputs, time to load the model and to predict, and the total. A cancelled or failed run leaves "
               "nothing behind, so it is not listed",
    "reopenButton": "Load the selected run's layers again as one group; the map zooms to them and Export map "
                    "prints them",
    "detailsButton": "The selected run's record (inference.json), read-only: inputs, outputs, classes, timings",
    "deleteButton": "Delete the selected run and its files (asks first); its layers leave the project first",
}


class InferenceHistory:
    """Needs the dock's ui (runList, reopenButton, detailsButton, deleteButton), task, _say, iface and
    start_engine_task."""

    text_dialog: Optional[TextDialog] = None

    def _set_up_history(self) -> None:
        self._deleting: tuple[str, int] = ("", 0)  # the run being deleted and how many of its layers went
        for name, tip in HISTORY_TOOLTIPS.items():
            getattr(self.ui, name).setToolTip(tip)
        runs = self.ui.runList
        runs.setWordWrap(True)  # two lines per run, wrapped in a narrow panel rather than cut
        runs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.ui.layout().setStretchFactor(runs, 1)  # a taller panel gives its room to the history
        runs.currentItemChanged.connect(lambda _current, _previous: self._update_history_buttons())
        runs.itemDoubleClicked.connect(lambda _item: self.reopen_selected())
        self.ui.reopenButton.clicked.connect(lambda: self.reopen_selected())
        self.ui.detailsButton.clicked.connect(lambda: self.show_details())
        self.ui.deleteButton.clicked.connect(lambda: self.delete_selected())

    def refresh_runs(self) -> None:
        """The workspace's runs, newest first; the selection is kept when the run still exists."""
        current = (self.selected_run() or {}).get("inference_id")
        runs = self.ui.runList
        runs.clear()
        for record in workspace_index.inferences():
            item = QListWidgetItem(run_history.history_text(record))
            item.setToolTip(run_history.tooltip_text(record))
            item.setData(Qt.ItemDataRole.UserRole, dict(record))
            runs.addItem(item)
            if record.get("inference_id") == current:
                runs.setCurrentItem(item)
        self.ui.historyLabel.setText(f"Runs in the workspace ({runs.count()})" if runs.count() else
                                     "Runs in the workspace: none yet")
        self._update_history_buttons()

    def selected_run(self) -> Optional[dict[str, Any]]:
        item = self.ui.runList.currentItem()
        record = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        return record if record and record.get("inference_id") else None

    def _update_history_buttons(self) -> None:
        chosen = self.selected_run() is not None
        self.ui.reopenButton.setEnabled(chosen)
        self.ui.detailsButton.setEnabled(chosen)
        self.ui.deleteButton.setEnabled(chosen and self.task is None)

    def _run_folder(self, record: dict[str, Any]) -> Path:
        return Workspace(Path(settings.workspace())).dir("inferences") / str(record["inference_id"])

    def reopen_selected(self) -> list[Any]:
        """The selected run's layers as one group, as after the run: the map zooms to them, Export map prints
        them. An area run loads per date (run_layers), a raster-layer run as its prediction and confidence."""
        record = self.selected_run()
        if record is None:
            return []
        json_path = self._run_folder(record) / "inference.json"
        try:
            if run_history.is_area_run(record):
                self.load_run(run_layers.run_record({"outputs": {"inference_json": str(json_path)}}))
            else:
                self._reopen_raster_run(record)
        except (OSError, ValueError, KeyError, RuntimeError) as error:  # a file gone or unreadable
            self._say(f"Re-open {record['inference_id']}: {error}", problem=True)
            return []
        return list(self.loaded_layers)

    def _reopen_raster_run(self, record: dict[str, Any]) -> None:
        title = " — ".join(p for p in (run_layers.run_model(record), run_history.input_text(record),
                                       str(record.get("created") or "")[:16].replace("T", " ")) if p)
        self.loaded_layers = layers.load_inference_layers(record, f"GeoStudio: {title}")
        self.run = None
        self.export_content = map_export.MapContent(title, list(self.loaded_layers), list(self.loaded_layers))
        self.ui.exportButton.setEnabled(True)
        layers.zoom_to(self.iface.mapCanvas(), self.loaded_layers)
        self._say(f"Re-opened {record['inference_id']}: {len(self.loaded_layers)} layer(s).")

    def show_details(self) -> Optional[TextDialog]:
        """The run's inference.json as the engine wrote it, pretty-printed, read-only (the engine keeps no log
        for a run: its progress went to the dock, its warnings to the message bar)."""
        record = self.selected_run()
        if record is None:
            return None
        path = self._run_folder(record) / "inference.json"
        try:
            text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2, ensure_ascii=False)
        except (OSError, ValueError) as error:
            self._say(f"Details of {record['inference_id']}: {error}", problem=True)
            return None
        if self.text_dialog is not None:
            self.text_dialog.close()
        self.text_dialog = TextDialog(f"Run {record['inference_id']}", text, False, self)
        self.text_dialog.show()
        return self.text_dialog

    def delete_selected(self) -> Optional[tasks.EngineTask]:
        """Delete the selected run after a confirmation; its layers in the project go first (their files go)."""
        record = self.selected_run()
        if self.task is not None or record is None:
            return None
        shown = run_history.layers_from(self._run_folder(record))
        note = f"\n\nIts {len(shown)} layer(s) in this project are removed too." if shown else ""
        answer = QMessageBox.question(
            self, "Delete run", f"Delete the run {record['inference_id']} and its files? This cannot be undone.{note}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        removed = run_history.remove_layers(shown)
        if removed and any(layer in shown for layer in (self.export_content.layers if self.export_content else [])):
            self.export_content = None  # its layers are gone: nothing to print
            self.ui.exportButton.setEnabled(False)
        self._deleting = (record["inference_id"], removed)
        task = self.start_engine_task(f"GeoStudio: delete {record['inference_id']}", contract.DELETE,
                                      contract.delete_spec("inferences", record["inference_id"]), self._run_deleted,
                                      on_failure=self._delete_failed)
        if task is not None:
            self._say(f"Deleting {record['inference_id']}…")
        return task

    def _run_deleted(self, result: dict[str, Any]) -> None:
        _, removed = self._deleting
        self.refresh_runs()
        self._say(f"Deleted {result['summary']['id']}" + (f" and its {removed} layer(s)." if removed else "."))

    def _delete_failed(self, failure: contract.EngineFailure) -> None:
        self.refresh_runs()
        self._say(f"Not deleted: {failure.text}", problem=True)
