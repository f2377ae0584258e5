"""Dataset onboarding dock: the Studio's three steps (files, data source and bands, label categories)."""

from __future__ import annotations

import re
from typing import Any, Optional

from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QListWidgetItem, QTableWidgetItem

from .. import tasks, workspace_index
from .base import UiDock
from .messages import show_success

DEFAULT_CATEGORIES = [(0, "Background", "#d9d9d9"), (1, "Target", "#1f78b4")]


class OnboardingDock(UiDock):
    UI_FILE = "onboarding_dock.ui"
    TITLE = "Datasets"
    OBJECT_NAME = "GeoStudioOnboardingDock"
    RUN_BUTTON = "onboardButton"
    CANCEL_BUTTON = "cancelButton"

    def __init__(self, iface, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.collection: dict[str, Any] = {}
        table = self.ui.categoriesTable
        table.horizontalHeader().setStretchLastSection(True)
        for row in DEFAULT_CATEGORIES:
            self.add_category(*row)
        self.ui.addCategoryButton.clicked.connect(lambda: self.add_category(table.rowCount(), f"Class {table.rowCount()}",
                                                                            "#e31a1c"))
        self.ui.removeCategoryButton.clicked.connect(lambda: table.removeRow(max(table.currentRow(), 0))
                                                     if table.rowCount() else None)
        self.ui.onboardButton.clicked.connect(self.start_onboarding)
        self.ui.refreshButton.clicked.connect(self.refresh_datasets)
        self.visibilityChanged.connect(lambda visible: visible and self.refresh_datasets())

    # ------------------------------------------------------------- form
    def add_category(self, cat_id: int, name: str, colour: str) -> None:
        table = self.ui.categoriesTable
        row = table.rowCount()
        table.insertRow(row)
        table.setItem(row, 0, QTableWidgetItem(str(cat_id)))
        table.setItem(row, 1, QTableWidgetItem(name))
        swatch = QTableWidgetItem(colour)
        swatch.setBackground(QColor(colour))
        table.setItem(row, 2, swatch)

    def use_collection(self, collection: dict[str, Any]) -> None:
        """Pre-fill the data source from a collection picked in the Connectors dock."""
        self.collection = collection
        self.ui.collectionEdit.setText(f"{collection['connector']} / {collection['collection']}")
        if collection.get("modality_tag"):
            self.ui.modalityEdit.setText(collection["modality_tag"])
        if not self.ui.bandsEdit.text().strip():
            self.ui.bandsEdit.setText(", ".join(b["band_name"] for b in collection.get("bands", [])))

    def build_payload(self) -> dict[str, Any]:
        """The Studio onboarding v2 payload for what the form shows (the engine validates it)."""
        connector, _, collection = (p.strip() for p in self.ui.collectionEdit.text().partition("/"))
        rgb = {b["band_name"]: b.get("RGB_band") for b in self.collection.get("bands", [])}
        names = [n.strip() for n in re.split(r"[,;]", self.ui.bandsEdit.text()) if n.strip()]
        bands = [{"index": i, "band_name": n, "scaling_factor": 1, **({"RGB_band": rgb[n]} if rgb.get(n) else {})}
                 for i, n in enumerate(names)]
        categories = []
        table = self.ui.categoriesTable
        for row in range(table.rowCount()):
            cells = [table.item(row, c).text().strip() if table.item(row, c) else "" for c in range(3)]
            categories.append({"id": cells[0], "name": cells[1], "color": cells[2], "opacity": 1})
        options: dict[str, Any] = {"ignore_id": self.ui.ignoreSpin.value()}
        if self.ui.chipSpin.value():
            options["chip_size"] = self.ui.chipSpin.value()
        return {
            "dataset_name": self.ui.nameEdit.text().strip(),
            "description": "",
            "dataset_url": self.ui.folderWidget.filePath().strip(),
            "label_suffix": self.ui.labelSuffixEdit.text().strip(),
            "purpose": self.ui.purposeCombo.currentText(),
            "data_sources": [{
                "connector": connector, "collection": collection,
                "modality_tag": self.ui.modalityEdit.text().strip(),
                "file_suffix": self.ui.dataSuffixEdit.text().strip(), "bands": bands,
            }],
            "label_categories": categories,
            "onboarding_options": options,
            "version": "v2",
        }

    # ------------------------------------------------------------- run
    def start_onboarding(self) -> Optional[tasks.EngineTask]:
        payload = self.build_payload()
        return self.start_engine_task(f"GeoStudio: onboard {payload['dataset_name'] or 'dataset'}", "onboard",
                                      payload, self._done)

    def _done(self, result: dict[str, Any]) -> None:
        summary = result["summary"]
        splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
        show_success("GeoStudio", f"Dataset {summary['dataset_id']} onboarded ({summary['n_samples']} samples: {splits}).")
        self.refresh_datasets()

    def refresh_datasets(self) -> None:
        self.ui.datasetList.clear()
        for record in workspace_index.datasets():
            classes = ", ".join(c["name"] for c in record.get("classes", []))
            item = QListWidgetItem(f"{record['dataset_name']} — {record['purpose']}, {'+'.join(record['modalities'])}, "
                                   f"{record['n_samples']} samples, {record['size_bytes'] / 1e6:.1f} MB")
            item.setToolTip(f"{record['dataset_id']}\nclasses: {classes}\ncreated {record['created']}")
            item.setData(256, record["dataset_id"])
            self.ui.datasetList.addItem(item)
