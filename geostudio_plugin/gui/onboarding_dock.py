"""Datasets dock: the Studio's three onboarding steps (files + pre-scan, data sources and bands, label
categories), then Onboard as a task; and the workspace's datasets with Preview, Details and Delete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional

from qgis.core import QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import QColorDialog, QFileDialog, QHeaderView, QListWidgetItem, QMessageBox, QTableWidgetItem

from .. import contract, credentials, layers, settings, tasks, workspace_index
from .base import UiDock
from .messages import show_info, show_success

ROLE = Qt.ItemDataRole.UserRole
COLLECTION_COLUMN = 2  # its item carries the row's picked collection (or loaded payload source) as ROLE data
SOURCES_HINT = "Pick a collection in the Connectors tab to fill the selected row."
MISSING_STYLE = "color: #b2182b;"  # what is still needed, next to the fields it concerns
MISSING_CELL = QColor("#f6d5d8")
PALETTE = ["#d9d9d9", "#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99",
           "#b2df8a", "#fdbf6f", "#cab2d6", "#ffff99", "#8dd3c7", "#bebada", "#80b1d3"]


def _split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;]", text) if part.strip()]


class OnboardingDock(UiDock):
    UI_FILE = "onboarding_dock.ui"
    HELP_SECTION = "datasets"  # README: The docks > datasets
    TITLE = "Datasets"
    OBJECT_NAME = "GeoStudioOnboardingDock"
    RUN_BUTTON = ("onboardButton", "prescanButton")
    CANCEL_BUTTON = "cancelButton"
    TOOLTIPS = {
        "nameEdit": "The dataset's name as the lists show it (letters, digits, spaces, '-', '_')",
        "purposeCombo": "Segmentation: labels are class ids; Regression: labels are values",
        "cloudSpin": "Labels only: skip scenes with more cloud than this (percent)",
        "prescanButton": "Pair the images and labels, read their bands and label values; nothing is written",
        "sourcesTable": "One row per data source: the file suffix, a modality tag (also a folder name), the "
                        "collection it came from and its band names in file order",
        "removeSourceButton": "Remove the selected data source",
        "categoriesTable": "The label classes: id (the value in the label files), name and colour (double-click the "
                           "colour to pick one)",
        "addCategoryButton": "Add a label class",
        "removeCategoryButton": "Remove the selected label class",
        "ignoreSpin": "Label value that is not a class (no data); ignored in training",
        "chipSpin": "Cut scenes into square chips of this many pixels; 0 keeps whole scenes",
        "cogCheck": "Write the onboarded rasters as Cloud Optimized GeoTIFFs",
        "onboardButton": "Onboard the dataset into the workspace (runs in the background)",
        "cancelButton": "Stop the running pre-scan or onboarding; nothing is kept",
        "datasetList": "The datasets in the workspace; hover for details",
        "previewButton": "Load three samples of the selected dataset (image and label) and zoom to them",
        "detailsButton": "Show the selected dataset's bands, classes, splits and log",
        "deleteButton": "Delete the selected dataset and its files (asks first)",
        "refreshButton": "Read the workspace's datasets again",
    }

    def __init__(self, iface, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.prescan_report: Optional[contract.PrescanReport] = None
        self.preview_layers: list[QgsRasterLayer] = []
        self.status_item: Optional[QListWidgetItem] = None  # the running onboarding's line in the dataset list
        # what a loaded payload holds that the form does not show, kept for build_payload
        self.options_extras: dict[str, Any] = {}  # split, seed, label_type...
        self.payload_extras: dict[str, Any] = {}  # description, version
        self.payload_endpoints: dict[str, str] = {}  # the payload's own endpoints (contract.resolve_endpoints)
        self.ui.chipSpin.setSuffix(" px")
        for table in (self.ui.sourcesTable, self.ui.categoriesTable):
            table.horizontalHeader().setStretchLastSection(True)
            table.verticalHeader().setVisible(False)
        header = self.ui.sourcesTable.horizontalHeader()  # every header readable: the collection column gives way
        for column in (0, 1, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for row, (cat_id, name) in enumerate([(0, "Background"), (1, "Target")]):
            self.add_category(cat_id, name, PALETTE[row])
        self.add_source_row("", "", "", "")
        table = self.ui.categoriesTable
        self.ui.addCategoryButton.clicked.connect(
            lambda: self.add_category(table.rowCount(), f"Class {table.rowCount()}", PALETTE[table.rowCount() % 16]))
        self.ui.removeCategoryButton.clicked.connect(
            lambda: table.removeRow(table.currentRow() if table.currentRow() >= 0 else table.rowCount() - 1))
        self.ui.prescanButton.clicked.connect(self.start_prescan)
        self.ui.categoriesTable.cellDoubleClicked.connect(self.pick_colour)
        self.ui.fromLabelsCheck.toggled.connect(self._from_labels_toggled)
        self.ui.addSourceButton.clicked.connect(lambda: self.add_source_row("", "", "", ""))
        self.ui.removeSourceButton.clicked.connect(self.remove_source_row)
        self.ui.loadPayloadButton.clicked.connect(self.choose_payload)
        self.ui.onboardButton.clicked.connect(self.start_onboarding)
        self.ui.refreshButton.clicked.connect(self.refresh_datasets)
        self.ui.previewButton.clicked.connect(lambda: self.preview_selected())  # not clicked(bool) as count
        self.ui.detailsButton.clicked.connect(self.show_details)
        self.ui.deleteButton.clicked.connect(self.delete_selected)
        self.visibilityChanged.connect(lambda visible: visible and self.refresh_datasets())
        # what is still missing is said next to the fields, as they are filled, before Onboard is pressed
        for edit in (self.ui.nameEdit, self.ui.labelSuffixEdit, self.ui.dataSuffixesEdit):
            edit.textChanged.connect(lambda _text: self.update_hints())
        self.ui.folderWidget.fileChanged.connect(lambda _path: self.update_hints())
        self.ui.fromLabelsCheck.toggled.connect(lambda _on: self.update_hints())
        self.ui.sourcesTable.itemChanged.connect(lambda _item: self.update_hints())
        self.ui.sourcesTable.model().rowsRemoved.connect(lambda *_args: self.update_hints())
        self.update_hints()

    # ----------------------------------------------------------------- tables
    def add_category(self, cat_id: int, name: str, colour: str) -> None:
        table = self.ui.categoriesTable
        row = table.rowCount()
        table.insertRow(row)
        table.setItem(row, 0, QTableWidgetItem(str(cat_id)))
        table.setItem(row, 1, QTableWidgetItem(name))
        swatch = QTableWidgetItem(colour)
        swatch.setBackground(QColor(colour))
        table.setItem(row, 2, swatch)

    def pick_colour(self, row: int, column: int) -> None:
        """Double-clicking a class's colour opens a colour picker (the cell shows the colour and its #rrggbb)."""
        if column != 2:
            return
        item = self.ui.categoriesTable.item(row, 2)
        colour = QColorDialog.getColor(QColor(item.text() if item else "#000000"), self, "Class colour")
        if colour.isValid():
            swatch = QTableWidgetItem(colour.name())
            swatch.setBackground(colour)
            self.ui.categoriesTable.setItem(row, 2, swatch)

    def add_source_row(self, suffix: str, modality: str, collection: str, bands: str) -> None:
        table = self.ui.sourcesTable
        row = table.rowCount()
        table.insertRow(row)
        for column, text in enumerate((suffix, modality, collection, bands)):
            table.setItem(row, column, QTableWidgetItem(text))
        self.update_hints()

    def remove_source_row(self) -> None:
        table = self.ui.sourcesTable
        row = table.currentRow() if table.currentRow() >= 0 else table.rowCount() - 1
        if row < 0:
            return
        table.removeRow(row)  # the picked collections of the other rows move with them

    def _from_labels_toggled(self, on: bool) -> None:
        """Labels only: no pairing to pre-scan, no data files; the date window and cloud limit apply."""
        for widget in (self.ui.preDaysSpin, self.ui.postDaysSpin, self.ui.cloudSpin):
            widget.setEnabled(on)
        for widget in (self.ui.prescanButton, self.ui.dataSuffixesEdit, self.ui.labelSuffixEdit):
            widget.setEnabled(not on)

    def _set_running(self, running: bool) -> None:
        super()._set_running(running)
        if not running:
            self._from_labels_toggled(self.ui.fromLabelsCheck.isChecked())

    def _cell(self, table, row: int, column: int) -> str:  # noqa: ANN001
        item = table.item(row, column)
        return item.text().strip() if item else ""

    def row_collection(self, row: int) -> dict[str, Any]:
        """The collection picked for a data-source row ({"payload_source": ...} for a loaded payload's row)."""
        item = self.ui.sourcesTable.item(row, COLLECTION_COLUMN)
        return (item.data(ROLE) if item is not None else None) or {}

    def _set_collection(self, row: int, text: str, collection: dict[str, Any]) -> None:
        item = QTableWidgetItem(text)
        item.setData(ROLE, collection)
        self.ui.sourcesTable.setItem(row, COLLECTION_COLUMN, item)

    def use_collection(self, collection: dict[str, Any]) -> None:
        """A collection picked in the Connectors dock fills the selected data-source row."""
        table = self.ui.sourcesTable
        row = max(table.currentRow(), 0)
        if table.rowCount() == 0:
            self.add_source_row("", "", "", "")
        self._set_collection(row, f"{collection['connector']} / {collection['collection']}", collection)
        # runtime collections have no tag: name the modality after them (a tag is also a folder name)
        table.setItem(row, 1, QTableWidgetItem(contract.propose_modality([], collection)))
        if not self._cell(table, row, 3):
            table.setItem(row, 3, QTableWidgetItem(", ".join(b["band_name"] for b in collection.get("bands", []))))
        self.update_hints()

    # ------------------------------------------------------------ what is missing
    def missing(self, for_prescan: bool = False) -> dict[str, list[str]]:
        """What the form still needs, by place: ``files`` (step 1) and ``sources`` (step 2, per row)."""
        from_labels = self.ui.fromLabelsCheck.isChecked()
        files = []
        if not for_prescan and not self.ui.nameEdit.text().strip():
            files.append("a dataset name")
        if not self.ui.folderWidget.filePath().strip():
            files.append("a source (folder, .zip/.tar archive or URL)")
        if not from_labels and not self.ui.labelSuffixEdit.text().strip():
            files.append("the label suffix (how label file names end, e.g. _LabelHand.tif)")
        if not from_labels and not _split(self.ui.dataSuffixesEdit.text()) and (for_prescan or not any(
                self._cell(self.ui.sourcesTable, r, 0) for r in range(self.ui.sourcesTable.rowCount()))):
            files.append("the data suffixes (how image file names end, e.g. _S1Hand.tif)")
        sources = []
        if not for_prescan:
            table = self.ui.sourcesTable
            rows = [r for r in range(table.rowCount()) if any(self._cell(table, r, c) for c in range(4))]
            if not rows:
                sources.append("No data source yet: run Pre-scan, or Add a row.")
            for r in rows:
                gaps = []
                if not self._cell(table, r, 0) and not (from_labels and self._cell(table, r, 2)):
                    gaps.append("File suffix")
                if not self._cell(table, r, 1):
                    gaps.append("Modality (a tag such as S1GRD or S2L2A, or pick a collection in Connectors)")
                if not _split(self._cell(table, r, 3)):
                    gaps.append("Bands (run Pre-scan, or type the band names in file order)")
                if gaps:
                    sources.append(f"Row {r + 1} needs: " + "; ".join(gaps) + ".")
        return {"files": files, "sources": sources}

    def update_hints(self, for_prescan: bool = False) -> dict[str, list[str]]:
        """Say next to step 1 and step 2 what is still missing; empty required cells are tinted."""
        gaps = self.missing(for_prescan)
        files = self.ui.filesHint
        files.setText("Still needed: " + "; ".join(gaps["files"]) + "." if gaps["files"] else "")
        files.setStyleSheet(MISSING_STYLE)
        files.setVisible(bool(gaps["files"]))
        self.ui.sourcesHint.setText(" ".join(gaps["sources"]) if gaps["sources"] else SOURCES_HINT)
        self.ui.sourcesHint.setStyleSheet(MISSING_STYLE if gaps["sources"] else "")
        table = self.ui.sourcesTable
        blocked = table.blockSignals(True)
        try:
            for r in range(table.rowCount()):
                for c in (0, 1, 3):
                    item = table.item(r, c)
                    if item is None:
                        item = QTableWidgetItem("")
                        table.setItem(r, c, item)
                    empty = not item.text().strip() and not (c == 0 and self._cell(table, r, 2))
                    item.setBackground(QBrush(MISSING_CELL) if empty else QBrush())
        finally:
            table.blockSignals(blocked)
        return gaps

    # ---------------------------------------------------------------- payload
    def build_payload(self) -> dict[str, Any]:
        """The Studio onboarding v2 payload for what the form shows (the engine validates it)."""
        sources = []
        table = self.ui.sourcesTable
        from_labels = self.ui.fromLabelsCheck.isChecked()
        for row in range(table.rowCount()):
            suffix = self._cell(table, row, 0)
            if not suffix and from_labels and self._cell(table, row, 2):
                suffix = f"_{self._cell(table, row, 1) or f'source{row}'}.tif"  # fetched files are named by us
            if not suffix:
                continue
            connector, _, collection = (p.strip() for p in self._cell(table, row, 2).partition("/"))
            picked = self.row_collection(row)
            names = _split(self._cell(table, row, 3))
            loaded = picked.get("payload_source")
            loaded_bands = sorted(loaded.get("bands", []), key=lambda b: int(b.get("index", 0))) if loaded else []
            if loaded and [str(b["band_name"]) for b in loaded_bands] == names:
                bands = loaded_bands  # unchanged since the payload was loaded: keep indices, roles, scaling
            else:
                roles = {b["band_name"]: b.get("RGB_band") for b in picked.get("bands", [])}
                bands = [{"index": i, "band_name": n, "scaling_factor": 1,
                          **({"RGB_band": roles[n]} if roles.get(n) else {})} for i, n in enumerate(names)]
            extra = {k: loaded[k] for k in ("align_dates", "scaling_factor", "transform") if loaded and k in loaded}
            sources.append({"connector": connector, "collection": collection, "modality_tag": self._cell(table, row, 1),
                            "file_suffix": suffix, "bands": bands, **extra})
        categories = [{"id": self._cell(self.ui.categoriesTable, r, 0), "name": self._cell(self.ui.categoriesTable, r, 1),
                       "color": self._cell(self.ui.categoriesTable, r, 2), "opacity": 1}
                      for r in range(self.ui.categoriesTable.rowCount())]
        options: dict[str, Any] = {**self.options_extras, "ignore_id": self.ui.ignoreSpin.value(),
                                   "convert_to_cog": self.ui.cogCheck.isChecked(), "from_labels": from_labels}
        if self.ui.chipSpin.value():
            options["chip_size"] = self.ui.chipSpin.value()
        label_suffix = self.ui.labelSuffixEdit.text().strip()
        if from_labels:
            options.update(pre_days=self.ui.preDaysSpin.value(), post_days=self.ui.postDaysSpin.value(),
                           max_cloud_cover=self.ui.cloudSpin.value())
            label_suffix = label_suffix or ".label.tif"  # unused: the labels are the source's GeoJSON or rasters
        if self.payload_endpoints:
            options["endpoints"] = dict(self.payload_endpoints)
        form = {
            "description": "",
            **self.payload_extras,
            "dataset_name": self.ui.nameEdit.text().strip(),
            "dataset_url": self.ui.folderWidget.filePath().strip(),
            "label_suffix": label_suffix,
            "purpose": self.ui.purposeCombo.currentText(),
            "data_sources": sources,
            "label_categories": categories,
            "onboarding_options": options,
            "version": "v2",
        }
        return contract.onboard_payload(form, credentials.endpoints())

    def choose_payload(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Studio onboarding payload", "", "JSON (*.json)")
        if path:
            try:
                self.load_payload(json.loads(Path(path).read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                QMessageBox.warning(self, "GeoStudio", f"Cannot read {path}: {exc}")

    def load_payload(self, payload: dict[str, Any]) -> None:
        """Fill the three steps from a Studio onboarding payload (what build_payload gives back)."""
        self.ui.nameEdit.setText(str(payload.get("dataset_name", "")))
        self.ui.purposeCombo.setCurrentText(str(payload.get("purpose", "Segmentation")))
        self.ui.folderWidget.setFilePath(str(payload.get("dataset_url", "")))
        self.ui.labelSuffixEdit.setText(str(payload.get("label_suffix", "")))
        sources = payload.get("data_sources", [])
        self.ui.dataSuffixesEdit.setText(", ".join(str(s.get("file_suffix", "")) for s in sources))
        self.ui.sourcesTable.setRowCount(0)
        for row, source in enumerate(sources):
            bands = sorted(source.get("bands", []), key=lambda b: int(b.get("index", 0)))
            collection = f"{source.get('connector', '')} / {source.get('collection', '')}".strip(" /")
            self.add_source_row(str(source.get("file_suffix", "")), str(source.get("modality_tag", "")), collection,
                                ", ".join(str(b["band_name"]) for b in bands))
            # keep what the table does not show: band positions, R/G/B roles, scaling, align_dates
            self._set_collection(row, collection, {"payload_source": source})
        self.ui.categoriesTable.setRowCount(0)
        for category in payload.get("label_categories", []):
            self.add_category(category["id"], str(category["name"]), str(category.get("color", "#000000")))
        options = payload.get("onboarding_options", {})
        self.ui.ignoreSpin.setValue(int(options.get("ignore_id", -1)))
        self.ui.chipSpin.setValue(int(options.get("chip_size") or 0))
        self.ui.cogCheck.setChecked(bool(options.get("convert_to_cog", True)))
        self.ui.fromLabelsCheck.setChecked(str(options.get("from_labels", False)).lower() == "true")
        self.ui.preDaysSpin.setValue(int(options.get("pre_days", 0)))
        self.ui.postDaysSpin.setValue(int(options.get("post_days", 7)))
        self.ui.cloudSpin.setValue(int(float(options.get("max_cloud_cover", 80))))
        shown = ("ignore_id", "chip_size", "convert_to_cog", "from_labels", "pre_days", "post_days", "max_cloud_cover",
                 "endpoint", "endpoints")
        self.options_extras = {k: v for k, v in options.items() if k not in shown}
        self.payload_endpoints = contract.payload_endpoints(options, str(sources[0].get("connector") or "")
                                                            if sources else "")
        self.payload_extras = {k: v for k, v in payload.items() if k in ("description", "version")}
        self.update_hints()

    # --------------------------------------------------------------- pre-scan
    def start_prescan(self) -> Optional[tasks.EngineTask]:
        if self.task is not None:
            return None
        gaps = self.update_hints(for_prescan=True)["files"]
        if gaps:  # said next to the fields; the engine is not asked
            self._prescan_state("Pre-scan needs " + "; ".join(gaps) + ".", failed=True)
            return None
        spec = contract.prescan_spec(self.ui.folderWidget.filePath().strip(), self.ui.labelSuffixEdit.text().strip(),
                                     _split(self.ui.dataSuffixesEdit.text()))
        self._prescan_state("Scanning…")
        return self.start_engine_task("GeoStudio: pre-scan", contract.PRESCAN, spec, self._show_prescan,
                                      on_failure=self._prescan_failed)

    def _prescan_state(self, text: str, failed: bool = False) -> None:
        self.ui.prescanLabel.setText(text)
        self.ui.prescanLabel.setStyleSheet(MISSING_STYLE if failed else "")

    def _prescan_failed(self, failure: contract.EngineFailure) -> None:
        """A failed or cancelled pre-scan says so where "Scanning…" was."""
        if failure.cancelled:
            self._prescan_state("Pre-scan cancelled.")
        else:
            self._prescan_state(f"Pre-scan failed: {failure.message} {failure.hint}".strip(), failed=True)

    def _show_prescan(self, result: dict[str, Any]) -> None:
        report: contract.PrescanReport = result["summary"]["report"]
        self.prescan_report = report
        problems = report["problems"]
        text = f"{report['pairs']} pair(s); " + (
            "no problem found." if not problems else
            f"{len(problems)} problem(s): " + "; ".join(f"[{p['code']}] {p['message']}" for p in problems[:4]))
        self._prescan_state(text, failed=bool(problems))
        table = self.ui.sourcesTable
        known = {self._cell(table, r, 0): r for r in range(table.rowCount())}
        for suffix, bands in report["bands_by_suffix"].items():
            names = ", ".join(b["value"] for b in bands)
            row = known.get(suffix)
            if row is None:
                row = next((r for r in range(table.rowCount()) if not self._cell(table, r, 0)), None)
                if row is None:
                    self.add_source_row(suffix, "", "", names)
                    row = table.rowCount() - 1
                table.setItem(row, 0, QTableWidgetItem(suffix))
            if not self._cell(table, row, 3):
                table.setItem(row, 3, QTableWidgetItem(names))
            if not self._cell(table, row, 1):  # a proposal the user can change: the collection's tag or the bands'
                table.setItem(row, 1, QTableWidgetItem(self._unique_tag(
                    contract.propose_modality(_split(self._cell(table, row, 3)), self.row_collection(row)), row)))
        values = [v for v in report["label_values"] if v != self.ui.ignoreSpin.value()]
        current = {self._cell(self.ui.categoriesTable, r, 0) for r in range(self.ui.categoriesTable.rowCount())}
        if values and not {str(v) for v in values} <= current:  # replace the defaults by what the labels hold
            self.ui.categoriesTable.setRowCount(0)
            for n, value in enumerate(values):
                self.add_category(value, f"Class {value}", PALETTE[n % len(PALETTE)])
        self.update_hints()

    def _unique_tag(self, tag: str, row: int) -> str:
        """Each modality needs its own tag (case ignored): IMAGE, IMAGE_2..."""
        table = self.ui.sourcesTable
        taken = {self._cell(table, r, 1).lower() for r in range(table.rowCount()) if r != row}
        candidate, n = tag, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{tag}_{n}"
        return candidate

    # ---------------------------------------------------------------- onboard
    def start_onboarding(self) -> Optional[tasks.EngineTask]:
        if self.task is not None:
            return None
        gaps = self.update_hints()
        if gaps["files"] or gaps["sources"]:  # said next to the fields; nothing is sent to the engine
            (self.ui.nameEdit if gaps["files"] else self.ui.sourcesTable).setFocus()
            return None
        payload = self.build_payload()
        task = self.start_engine_task(f"GeoStudio: onboard {payload['dataset_name'] or 'dataset'}", contract.ONBOARD,
                                      payload, self._done, on_event=self._show_status,
                                      secrets=credentials.for_payload(payload))
        if task is not None:  # the Studio's statuses: Pending, then Onboarding with its stage, then the record
            self.status_item = QListWidgetItem(f"{payload['dataset_name']} — pending")
            self.status_item.setForeground(QBrush(QColor("#2166ac")))
            self.ui.datasetList.insertItem(0, self.status_item)
            task.taskTerminated.connect(self.refresh_datasets)
        return task

    def _show_status(self, event: dict[str, Any]) -> None:
        item = self.status_item
        if contract.is_progress(event) and item is not None:
            name = item.text().split(" — ")[0]
            item.setText(f"{name} — onboarding: {event.get('stage')} {float(event.get('fraction') or 0):.0%}")

    def _done(self, result: dict[str, Any]) -> None:
        summary: contract.OnboardSummary = result["summary"]
        splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        show_success("GeoStudio", f"Dataset {summary['dataset_id']} onboarded ({summary['n_samples']} samples: {splits}).")
        self.refresh_datasets()

    # ----------------------------------------------------------- dataset list
    def refresh_datasets(self) -> None:
        self.status_item = None
        self.ui.datasetList.clear()
        for record in workspace_index.datasets():
            classes = ", ".join(c["name"] for c in record.get("classes", []))
            item = QListWidgetItem(f"{record['dataset_name']} — {record['purpose']}, {'+'.join(record['modalities'])}, "
                                   f"{record['n_samples']} samples, {record['size_bytes'] / 1e6:.1f} MB")
            item.setToolTip(f"{record['dataset_id']} ({record['status']})\nclasses: {classes}\ncreated {record['created']}")
            item.setData(ROLE, record)
            self.ui.datasetList.addItem(item)
        for failure in workspace_index.failed_datasets():
            item = QListWidgetItem(f"{failure['name']} — failed: {failure['error']['message'][:80]}")
            item.setForeground(QBrush(QColor("#b2182b")))
            item.setToolTip(f"{failure['error']['code']}: {failure['error']['message']}\n{failure['error']['hint']}")
            item.setData(ROLE, failure)
            self.ui.datasetList.addItem(item)

    def selected_record(self, action: str = "") -> Optional[dict[str, Any]]:
        """The dataset the user selected; never a default one. With ``action``, nothing selected is said."""
        item = self.ui.datasetList.currentItem()
        record = item.data(ROLE) if item is not None and item.isSelected() else None
        if record is None and action:
            show_info("GeoStudio", f"Select a dataset in the list to {action} it.")
        return record

    def show_details(self) -> Optional[QMessageBox]:
        record = self.selected_record("see the details of")
        if record is None:
            return None
        if record.get("status") == "Failed":
            text = f"{record['name']}: onboarding failed\n[{record['error']['code']}] {record['error']['message']}"
            details = "\n".join(record.get("log", []))
        else:
            params = record["training_params"]
            text = (f"{record['dataset_name']} ({record['dataset_id']})\n{record['purpose']}, "
                    f"{', '.join(record['modalities'])}; {record['n_samples']} samples; splits "
                    + ", ".join(f"{k} {len(v)}" for k, v in record["splits"].items()))
            details = json.dumps({"source": record["source"], "classes": record["classes"],
                                  **{m: {k: params[m][k] for k in ("band_names", "norm_means", "norm_stds")}
                                     for m in record["modalities"]}, "log": record["log"]}, indent=1)
        box = QMessageBox(QMessageBox.Icon.Information, "Dataset", text, QMessageBox.StandardButton.Close, self)
        box.setDetailedText(details)
        box.open()
        return box

    def delete_selected(self) -> Optional[tasks.EngineTask]:
        record = self.selected_record("delete")
        if record is None or record.get("status") != "Succeeded":
            return None
        trained = [t["name"] for t in workspace_index.tunes() if t.get("dataset_id") == record["dataset_id"]]
        note = (f"\n\n{len(trained)} tune(s) were trained on it: {', '.join(trained[:5])}"
                f"{'…' if len(trained) > 5 else ''}. Their records stay." if trained else "")
        answer = QMessageBox.question(
            self, "GeoStudio", f"Delete dataset {record['dataset_name']} ({record['dataset_id']}) and its files?{note}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return None
        self._deleting = record
        return self.start_engine_task(f"GeoStudio: delete {record['dataset_id']}", contract.DELETE,
                                      contract.delete_spec("datasets", record["dataset_id"]), self._deleted)

    def _deleted(self, _result: dict[str, Any]) -> None:
        record = getattr(self, "_deleting", None) or {}
        show_success("GeoStudio", f"Dataset {record.get('dataset_name', '')} ({record.get('dataset_id', '')}) deleted.")
        self.refresh_datasets()

    def preview_selected(self, count: int = 3) -> list[QgsRasterLayer]:
        """A few sample pairs as layers: the image in true colour (or grey), the label paletted by category."""
        record = self.selected_record("preview")
        if record is None or record.get("status") != "Succeeded":
            return []
        folder = Path(settings.workspace()) / "datasets" / record["dataset_id"]
        first = record["modalities"][0]
        modality = record["training_params"][first]
        rgb = [modality["bands"][i] + 1 for i in modality.get("rgb_indices") or []] or None
        group = layers.result_group(f"GeoStudio preview: {record['dataset_name']}")
        style = [{"quantity": c["index"], "color": c["color"], "label": c["name"], "opacity": 0.8}
                 for c in record["classes"]]
        self.preview_layers = []
        samples = (record["splits"]["train"] + record["splits"]["val"] + record["splits"]["test"])[:count]
        for sample in samples:
            image_path, label_path = contract.dataset_sample_paths(record, folder, sample, first)
            image = QgsRasterLayer(str(image_path), f"{sample} ({first})")
            label = QgsRasterLayer(str(label_path), f"{sample} label")
            layers.show_bands(image, rgb)
            layers.apply_style(label, {"segmentation": style})
            layers.add_to_group(image, group)
            layers.add_to_group(label, group)
            self.preview_layers += [image, label]
        layers.zoom_to(self.iface.mapCanvas(), self.preview_layers)
        return self.preview_layers
