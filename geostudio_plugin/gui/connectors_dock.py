"""Connectors & collections dock: connector -> collection -> bands, with search."""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import QTreeWidgetItem

from .base import UiDock
from .catalog_store import CatalogStore

ROLE = Qt.ItemDataRole.UserRole


class ConnectorsDock(UiDock):
    UI_FILE = "connectors_dock.ui"
    TITLE = "Connectors"
    OBJECT_NAME = "GeoStudioConnectorsDock"

    collectionSelected = pyqtSignal(dict)  # {"connector", "collection", "modality_tag", "bands": [...]}

    def __init__(self, iface, store: CatalogStore, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.store = store
        for column, width in enumerate((170, 70, 70)):
            self.ui.tree.setColumnWidth(column, width)
        self.ui.searchEdit.textChanged.connect(self.apply_filter)
        self.ui.refreshButton.clicked.connect(lambda: self._load(force=True))
        self.ui.tree.currentItemChanged.connect(self._on_current)
        store.changed.connect(self.populate)
        store.failed.connect(lambda message: self.ui.statusLabel.setText(f"Could not load the catalog: {message}"))
        self.visibilityChanged.connect(lambda visible: visible and self._load())

    def _load(self, force: bool = False) -> None:
        if self.store.catalog is None or force:
            self.ui.statusLabel.setText("Loading the catalog from the engine…")
        self.store.load(force)

    def populate(self, catalog: dict[str, Any]) -> None:
        tree = self.ui.tree
        tree.clear()
        n_collections = 0
        for connector in catalog.get("connectors", []):
            creds = connector.get("credentials") or []
            access = "open" if not creds else "needs credentials"
            top = QTreeWidgetItem([connector["name"], "", "", access])
            top.setToolTip(3, "No credentials needed" if not creds else "Credentials: " + ", ".join(creds))
            top.setData(0, ROLE, {"kind": "connector", **{k: v for k, v in connector.items() if k != "collections"}})
            top.setToolTip(0, connector["id"])
            for collection in connector.get("collections", []):
                n_collections += 1
                resolution = f"{collection['resolution_m']} m" if collection.get("resolution_m") else ""
                item = QTreeWidgetItem([collection["collection"], collection.get("modality_tag") or "", resolution, ""])
                item.setToolTip(0, collection.get("long_name") or collection.get("description", "")[:300])
                item.setData(0, ROLE, {"kind": "collection", "connector": connector["id"], **collection})
                for band in collection.get("bands", []):
                    role = f" ({band['RGB_band']})" if band.get("RGB_band") else ""
                    child = QTreeWidgetItem([band["band_name"] + role, "", band.get("resolution") or "", ""])
                    child.setToolTip(0, band.get("description", ""))
                    child.setData(0, ROLE, {"kind": "band", **band})
                    item.addChild(child)
                top.addChild(item)
            tree.addTopLevelItem(top)
            top.setExpanded(True)
        self.ui.statusLabel.setText(f"{tree.topLevelItemCount()} connectors, {n_collections} collections")
        self.apply_filter(self.ui.searchEdit.text())

    def apply_filter(self, text: str) -> None:
        needle = text.strip().lower()

        def visit(item: QTreeWidgetItem) -> bool:
            own = not needle or any(needle in item.text(c).lower() for c in range(item.columnCount()))
            children = [visit(item.child(i)) for i in range(item.childCount())]
            shown = own or any(children)
            if own and needle:  # a matching parent shows its whole subtree
                for i in range(item.childCount()):
                    _show_all(item.child(i))
            item.setHidden(not shown)
            return shown

        for i in range(self.ui.tree.topLevelItemCount()):
            visit(self.ui.tree.topLevelItem(i))

    def _on_current(self, current: QTreeWidgetItem, _previous: QTreeWidgetItem) -> None:
        data = current.data(0, ROLE) if current else None
        if not data:
            self.ui.detailsLabel.setText("")
            return
        if data["kind"] == "band" and current.parent() is not None:
            data = current.parent().data(0, ROLE)
        if data["kind"] == "collection":
            self.ui.detailsLabel.setText(f"<b>{data['collection']}</b> ({data['connector']}, "
                                         f"{data.get('modality_tag') or 'no modality tag'}): "
                                         f"{(data.get('description') or data.get('long_name') or '')[:240]}")
            self.collectionSelected.emit(data)
        elif data["kind"] == "connector":
            self.ui.detailsLabel.setText(f"<b>{data['name']}</b> ({data['id']})")


def _show_all(item: QTreeWidgetItem) -> None:
    item.setHidden(False)
    for i in range(item.childCount()):
        _show_all(item.child(i))
