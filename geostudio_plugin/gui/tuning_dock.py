"""Fine-tuning dock: dataset, template and a compatible backbone, a few parameters, live metrics."""

from __future__ import annotations

from typing import Any, Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QListWidgetItem, QMessageBox, QTableWidgetItem

from .. import contract, settings, tasks, workspace_index
from .base import UiDock
from .catalog_store import CatalogStore
from .curve import CurveWidget
from .messages import show_success

# Metrics worth a row in the dock; the full set is in the tune's metrics.csv.
SHOWN_METRICS = ("train/loss", "val/loss", "val/mIoU", "val/Pixel_Accuracy", "test/mIoU")
FORM = ("nameEdit", "datasetCombo", "templateCombo", "backboneCombo", "epochsSpin", "batchSpin", "lrSpin", "cropSpin",
        "deviceCombo")  # read when Start is pressed: locked while the tune runs
PROBLEM_STYLE = "color: #b2182b;"


class TuningDock(UiDock):
    UI_FILE = "tuning_dock.ui"
    HELP_SECTION = "fine-tuning"  # README: The docks > fine-tuning
    TITLE = "Fine-tuning"
    OBJECT_NAME = "GeoStudioTuningDock"
    RUN_BUTTON = "startButton"
    CANCEL_BUTTON = "cancelButton"
    TOOLTIPS = {
        "nameEdit": "The tune's name: 4 to 30 letters, digits, '-' or '.' (spaces and '_' become '-')",
        "datasetCombo": "An onboarded dataset from the Datasets tab",
        "templateCombo": "The task template (segmentation, regression...): decoder, losses and metrics",
        "backboneCombo": "A pre-trained backbone that fits the template (size in millions of parameters)",
        "epochsSpin": "Passes over the training split",
        "batchSpin": "Samples per training step; lower it if memory runs out",
        "lrSpin": "Learning rate of the optimiser",
        "cropSpin": "Train on random square crops of this many pixels; 0 uses whole chips",
        "startButton": "Start fine-tuning in the background; metrics appear as epochs end",
        "cancelButton": "Stop the running tune; nothing is kept",
        "tuneList": "Finished tunes; select one to see its final metrics",
    }

    def __init__(self, iface, store: CatalogStore, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.store = store
        self.backbones: list[contract.BackboneEntry] = []
        self.ui.deviceCombo.setCurrentText(settings.device())  # the Settings' device; this tune may differ
        self.ui.cropSpin.setSuffix(" px")
        self.curve = CurveWidget(self.ui)  # the loss per epoch, under the metrics table
        layout = self.ui.layout()
        layout.insertWidget(layout.indexOf(self.ui.metricsTable) + 1, self.curve)
        self.ui.metricsTable.horizontalHeader().setStretchLastSection(True)
        self.ui.metricsTable.verticalHeader().setVisible(False)
        self.ui.metricsTable.setColumnWidth(0, 150)
        store.changed.connect(self.populate_catalog)
        self.ui.templateCombo.currentIndexChanged.connect(self._filter_backbones)
        self.ui.startButton.clicked.connect(self.start_tuning)
        self.ui.nameEdit.textChanged.connect(lambda _text: self.check_name())
        self.ui.tuneList.currentItemChanged.connect(lambda current, _previous: self.show_tune(current))
        self.visibilityChanged.connect(self._on_visible)

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
        for record in workspace_index.tunes():
            miou = record.get("test_metrics", {}).get("test/mIoU")
            score = f", test mIoU {miou:.3f}" if miou is not None else ""
            item = QListWidgetItem(f"{record['name']} — {record['base_model_id']} on {record['dataset_id']}"
                                   f" ({record.get('seconds', 0):.0f} s{score})")
            item.setToolTip(record["tune_id"])
            item.setData(Qt.ItemDataRole.UserRole, record)
            self.ui.tuneList.addItem(item)
        if self.task is None and self.ui.tuneList.count():
            self.ui.tuneList.setCurrentRow(0)

    def show_tune(self, item: Optional[QListWidgetItem]) -> None:
        """The final metrics of a finished tune (its last epoch and its test split)."""
        record: Optional[contract.TuneRecord] = item.data(Qt.ItemDataRole.UserRole) if item else None
        if not record or self.task is not None:
            return
        self.ui.metricsTable.setRowCount(0)
        self.curve.clear()
        for entry in record.get("history") or []:
            for name in self.curve.names:
                if entry.get(name) is not None:
                    self.curve.add(name, int(entry.get("epoch", 0)), float(entry[name]))
        last = (record.get("history") or [{}])[-1]
        for name in SHOWN_METRICS:
            value = record.get("test_metrics", {}).get(name, last.get(name))
            if value is not None:
                epoch = None if name.startswith("test/") else int(last.get("epoch", 0))
                self._set_metric(name, float(value), epoch)
        epochs = record.get("epochs_run", "?")
        self._say(f"{record['tune_id']}: {epochs} epoch{'' if epochs == 1 else 's'} on "
                  f"{record.get('device', '?')} in {record.get('seconds', 0):.0f} s")

    def populate_catalog(self, catalog: dict[str, Any]) -> None:
        self.backbones = catalog.get("backbones", [])
        self.ui.templateCombo.clear()
        for template in catalog.get("templates", []):
            self.ui.templateCombo.addItem(template["name"], template)
        self._filter_backbones()

    def _filter_backbones(self) -> None:
        """The Studio's compatibility rule: same model category as the template."""
        template = self.ui.templateCombo.currentData()
        self.ui.backboneCombo.clear()
        if not template:
            return
        category = template["extra_info"]["model_category"]
        for backbone in self.backbones:
            if backbone["model_params"]["model_category"] == category:
                self.ui.backboneCombo.addItem(f"{backbone['name']} ({backbone['params_m']:g} M)", backbone["name"])

    # -------------------------------------------------------------- run
    def build_payload(self) -> dict[str, Any]:
        """Raises ValueError when the device is outside the device vocabulary."""
        template = self.ui.templateCombo.currentData() or {}
        return contract.tune_spec(
            self.ui.nameEdit.text().strip() or "my-tune", self.ui.datasetCombo.currentData() or "",
            self.ui.backboneCombo.currentData() or "", template.get("id", ""), epochs=self.ui.epochsSpin.value(),
            batch_size=self.ui.batchSpin.value(), lr=self.ui.lrSpin.value(), crop_size=self.ui.cropSpin.value() or None,
            device=self.ui.deviceCombo.currentText())

    def check_name(self) -> str:
        """A bad name is said as it is typed, naming the characters that are not allowed."""
        problem = contract.tune_name_problem(self.ui.nameEdit.text()) if self.ui.nameEdit.text().strip() else ""
        self.ui.nameEdit.setStyleSheet("border: 1px solid #b2182b;" if problem else "")
        if self.task is None and (problem or self.ui.stageLabel.styleSheet()):
            self._say(problem, problem=bool(problem))
        return problem

    def start_tuning(self) -> Optional[tasks.EngineTask]:
        if self.task is not None or self.check_name():
            return None
        try:
            payload = self.build_payload()
        except ValueError as exc:
            QMessageBox.warning(self, "GeoStudio", str(exc))
            return None
        task = self.start_engine_task(f"GeoStudio: fine-tune {payload['name']}", contract.TUNE, payload, self._done,
                                      on_event=self._on_event, on_failure=self._failed)
        if task is not None:  # the metrics shown are this run's: no finished tune stays highlighted
            self.ui.metricsTable.setRowCount(0)
            self.curve.clear()
            self.ui.tuneList.setCurrentRow(-1)
            self._say(f"{payload['name']}: starting…")
        return task

    def _say(self, text: str, problem: bool = False) -> None:
        self.ui.stageLabel.setText(text)
        self.ui.stageLabel.setStyleSheet(PROBLEM_STYLE if problem else "")

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        for name in FORM:
            getattr(self.ui, name).setEnabled(not running)

    def _failed(self, failure: contract.EngineFailure) -> None:
        """A cancelled or failed tune leaves nothing that reads as a result: its metrics go, the label says why."""
        self.ui.metricsTable.setRowCount(0)
        self.curve.clear()
        self.ui.tuneList.setCurrentRow(-1)
        if failure.cancelled:
            self._say("Cancelled: the tune stopped and nothing was kept.")
        else:
            self._say(f"Failed: {failure.message} {failure.hint}".strip(), problem=True)

    def _on_event(self, event: dict[str, Any]) -> None:
        if self.task is None:  # a late event of a run that has ended
            return
        if contract.is_progress(event):
            self._say(str(event.get("message", "")))
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

    def _done(self, result: dict[str, Any]) -> None:
        summary: contract.TuneSummary = result["summary"]
        show_success("GeoStudio", f"Tune {summary['tune_id']} finished on {summary['device']} in "
                     f"{summary['seconds']:.0f} s (best val/loss {summary['best_val_loss']:.3f}).")
        self.refresh_workspace()
        for row in range(self.ui.tuneList.count()):  # the finished tune, highlighted, with its final metrics
            record = self.ui.tuneList.item(row).data(Qt.ItemDataRole.UserRole) or {}
            if record.get("tune_id") == summary["tune_id"]:
                self.ui.tuneList.setCurrentRow(row)
                self.show_tune(self.ui.tuneList.item(row))
                self._say(f"Done: {self.ui.stageLabel.text()}")
                break
