"""Connectors & collections dock: connector -> collection -> bands with access states, credentials,
availability (dates and scene footprints) and fetch (one true-colour layer per date)."""

from __future__ import annotations

import re
from typing import Any, Optional

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QDate, Qt, pyqtSignal
from qgis.PyQt.QtGui import QBrush, QColor
from qgis.PyQt.QtWidgets import QListWidgetItem, QMessageBox, QTreeWidgetItem

from .. import contract, credentials, layers, qgis_inputs
from .base import UiDock
from .catalog_store import CatalogStore
from .messages import show_success

ROLE = Qt.ItemDataRole.UserRole
ACCESS_COLOURS = {"ready": "#1a9641", "credentials missing": "#d7301f", "unreachable": "#b35806"}


class ConnectorsDock(UiDock):
    UI_FILE = "connectors_dock.ui"
    HELP_SECTION = "connectors"  # README: The docks > connectors
    TOOLTIPS = {
        "searchEdit": "Filter connectors and collections by name",
        "tree": "Connectors and their collections with access state; pick a collection to use it in Datasets",
        "dateStartEdit": "First day to search for scenes",
        "dateEndEdit": "Last day to search for scenes",
        "bandsEdit": "Bands to fetch, comma-separated (empty: the collection's default bands)",
        "checkButton": "Search the collection for scenes in the area and dates",
        "fetchButton": "Download the ticked dates as GeoTIFFs and add them to the map",
        "cancelButton": "Stop the running search or fetch",
        "datesList": "Dates with scenes; tick the ones to fetch",
    }
    TITLE = "Connectors"
    OBJECT_NAME = "GeoStudioConnectorsDock"
    RUN_BUTTON = ("checkButton", "fetchButton")
    CANCEL_BUTTON = "cancelButton"

    collectionSelected = pyqtSignal(dict)  # {"connector", "collection", "modality_tag", "bands": [...]}

    def __init__(self, iface, store: CatalogStore, parent=None) -> None:  # noqa: ANN001
        super().__init__(iface, parent)
        self.store = store
        self.selected: Optional[dict[str, Any]] = None  # the collection the availability tools work on
        self.connectors: dict[str, dict[str, Any]] = {}
        self.last_search: Optional[contract.SearchSummary] = None
        self.footprints: Optional[QgsVectorLayer] = None
        self.fetched_layers: list[QgsRasterLayer] = []
        self.ui.extentWidget.setOutputCrs(qgis_inputs.WGS84)
        self.ui.extentWidget.setMapCanvas(iface.mapCanvas())
        self.ui.extentWidget.setNullValueAllowed(True, "Map canvas extent")
        self.ui.extentWidget.clear()
        today = QDate.currentDate()
        self.ui.dateStartEdit.setDate(today.addDays(-30))
        self.ui.dateEndEdit.setDate(today)
        self.ui.credentialsButton.clicked.connect(self.open_credentials)
        self.ui.checkButton.clicked.connect(self.check_availability)
        self.ui.fetchButton.clicked.connect(self.fetch_checked)
        for column, width in enumerate((140, 62, 62)):  # the Access column (which credential is missing) gets the rest
            self.ui.tree.setColumnWidth(column, width)
        self.ui.searchEdit.textChanged.connect(self.apply_filter)
        self.ui.refreshButton.clicked.connect(lambda: self._load(force=True))
        self.ui.tree.currentItemChanged.connect(self._on_current)
        store.changed.connect(self.populate)
        store.failed.connect(self._catalog_failed)
        self.visibilityChanged.connect(lambda visible: visible and self._load())

    def _catalog_failed(self, message: str) -> None:
        self.ui.statusLabel.setText(f"Could not load the catalog: {message}")

    def _load(self, force: bool = False) -> None:
        if self.store.catalog is None or force:
            self.ui.statusLabel.setText("Loading the catalog from the engine…")
        self.store.load(force)

    def populate(self, catalog: dict[str, Any]) -> None:
        tree = self.ui.tree
        tree.clear()
        n_collections = 0
        for connector in catalog.get("connectors", []):
            self.connectors[connector["id"]] = connector
            state = connector.get("access", {})
            access = state.get("state", "")
            no_endpoint = access != "credentials missing" and not (state.get("endpoint") or connector.get("endpoint"))
            if access == "credentials missing":  # which credential, in the cell itself (all in the tooltip)
                needed = [n.strip() for n in str(state.get("detail", "")).split(";")[0].removeprefix("needs ").split(",")
                          if n.strip()]
                access = f"needs {needed[0]}" + (f" +{len(needed) - 1}" if len(needed) > 1 else "") if needed else access
            elif no_endpoint and not connector.get("collections"):
                access = "no endpoint set"
            top = QTreeWidgetItem([connector["name"], "", "", access])
            top.setToolTip(3, state.get("detail", "") or access)
            colour = ACCESS_COLOURS.get(state.get("state", ""), "#b35806" if no_endpoint else "")
            if access == "no endpoint set":
                colour = "#b35806"
            if colour:
                top.setForeground(3, QBrush(QColor(colour)))
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
            if not connector.get("collections"):  # say why the connector lists nothing
                why = ("no endpoint is set: select the connector and use Credentials… to set one" if no_endpoint
                       else "its catalog lists no collection")
                hint = QTreeWidgetItem([f"No collections: {why}.", "", "", ""])
                hint.setForeground(0, QBrush(QColor("#666666")))
                hint.setFirstColumnSpanned(True)
                top.addChild(hint)
            tree.addTopLevelItem(top)
            top.setExpanded(True)
        self._status = f"{tree.topLevelItemCount()} connectors, {n_collections} collections"
        self.ui.statusLabel.setText(self._status)
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

        shown = [visit(self.ui.tree.topLevelItem(i)) for i in range(self.ui.tree.topLevelItemCount())]
        current = self.ui.tree.currentItem()
        if needle and not any(shown):  # say so, and drop the details of what is no longer listed
            self.ui.statusLabel.setText(f"No connector, collection or band matches “{text.strip()}”.")
            self.ui.detailsLabel.setText("")
        elif needle:
            self.ui.statusLabel.setText(f"Showing matches for “{text.strip()}”.")
            if current is not None and current.isHidden():
                self.ui.detailsLabel.setText("")
        else:
            self.ui.statusLabel.setText(getattr(self, "_status", self.ui.statusLabel.text()))

    def _on_current(self, current: QTreeWidgetItem, _previous: QTreeWidgetItem) -> None:
        data = current.data(0, ROLE) if current else None
        if not data:
            self.ui.detailsLabel.setText("")
            return
        if data["kind"] == "band" and current.parent() is not None:
            data = current.parent().data(0, ROLE)
        if data["kind"] == "collection":
            about = (data.get("description") or data.get("long_name") or "").strip()[:240]
            bands = ", ".join(b["band_name"] for b in data.get("bands", [])[:12])
            self.ui.detailsLabel.setText(f"<b>{data['collection']}</b> ({data['connector']}, "
                                         f"{data.get('modality_tag') or 'no modality tag'})"
                                         + (f": {about}" if about else "")
                                         + (f"<br>Bands: {bands}" if bands else "<br>No band list: name the bands"
                                            " to fetch below."))
            if self.selected is None or (self.selected["connector"], self.selected["collection"]) != \
                    (data["connector"], data["collection"]):
                self.ui.bandsEdit.clear()
                self.ui.datesList.clear()  # dates found for another collection must not be fetched for this one
                self.ui.fetchButton.setEnabled(False)
                self.ui.availabilityLabel.setText("")
            self.selected = data
            title = f"Availability and fetch: {data['connector']} / {data['collection']}"
            group = self.ui.availabilityGroup  # a long collection name must not widen the panel: elided, whole in the tooltip
            group.setTitle(group.fontMetrics().elidedText(title, Qt.TextElideMode.ElideMiddle,
                                                          max(self.minimumWidth() - 80, 200)))
            group.setToolTip(title)
            self.ui.credentialsButton.setEnabled(True)
            self.collectionSelected.emit(data)
        elif data["kind"] == "connector":
            access = data.get("access", {})
            self.ui.detailsLabel.setText(f"<b>{data['name']}</b> ({data['id']}): {access.get('state', '')} "
                                         f"{access.get('detail', '')}")
            self.ui.credentialsButton.setEnabled(True)


    # ---------------------------------------------------------- credentials
    def current_connector(self) -> Optional[dict[str, Any]]:
        item = self.ui.tree.currentItem()
        while item is not None and item.parent() is not None:
            item = item.parent()
        data = item.data(0, ROLE) if item else None
        return self.connectors.get(data["id"]) if data else None

    def open_credentials(self):  # noqa: ANN201 - the dialog, for tests
        from .credentials_dialog import CredentialsDialog

        connector = self.current_connector()
        if connector is None:
            return None
        dialog = CredentialsDialog(connector, self)
        dialog.accepted.connect(lambda: self.store.load(force=True))
        dialog.open()
        return dialog

    # ---------------------------------------------------- availability, fetch
    def _request(self) -> Optional[dict[str, Any]]:
        """Connector, endpoint, collection and area from the widgets (main thread, before the task); the area
        is the extent widget's, else the map canvas's."""
        if self.selected is None:
            QMessageBox.information(self, "GeoStudio", "Select a collection in the tree first.")
            return None
        bbox = qgis_inputs.widget_bbox(self.ui.extentWidget, self.iface.mapCanvas())
        if bbox is None:
            QMessageBox.information(self, "GeoStudio", "Draw an area, or show it in the map canvas.")
            return None
        connector = self.selected["connector"]
        return {"connector": connector, "endpoint": credentials.endpoint(connector),
                "collection": self.selected["collection"], "bbox": bbox}

    def check_availability(self):  # noqa: ANN201
        request = self._request()
        if request is None:
            return None
        spec = contract.search_spec(request["connector"], request["collection"], request["bbox"],
                                    self.ui.dateStartEdit.date().toString("yyyy-MM-dd"),
                                    self.ui.dateEndEdit.date().toString("yyyy-MM-dd"),
                                    maxcc=self.ui.maxccSpin.value(), endpoint=request["endpoint"])
        self.ui.availabilityLabel.setText("Searching…")
        return self.start_engine_task(f"GeoStudio: availability of {spec['collection']}", contract.SEARCH, spec,
                                      self._show_availability, secrets=credentials.load(spec["connector"]))

    def _show_availability(self, result: dict[str, Any]) -> None:
        summary: contract.SearchSummary = result["summary"]
        self.last_search = summary
        dates = summary["results"][0]["unique_dates"]
        features = summary["footprints"]["features"]
        self.ui.datesList.clear()
        for day in dates:
            scenes = [f for f in features if f["properties"]["date"] == day]
            clouds = [f["properties"]["cloud_cover"] for f in scenes if f["properties"]["cloud_cover"] is not None]
            span = f"{min(clouds):.0f}" if clouds and min(clouds) == max(clouds) else \
                (f"{min(clouds):.0f}-{max(clouds):.0f}" if clouds else "")
            cloud = f", cloud {span} %" if clouds else ""
            item = QListWidgetItem(f"{day}: {len(scenes)} scene(s){cloud}")
            item.setData(ROLE, day)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.ui.datesList.addItem(item)
        if dates:
            self.ui.availabilityLabel.setText(f"{len(features)} scene(s) on {len(dates)} date(s).")
        else:
            near = summary.get("suggested_dates") or []
            self.ui.availabilityLabel.setText("Nothing in these dates. " + (
                "Nearest dates with data: " + ", ".join(near) if near else "No data within 120 days either."))
        self.ui.fetchButton.setEnabled(bool(dates))
        if self.footprints is not None and self.footprints.id() in QgsProject.instance().mapLayers():
            QgsProject.instance().removeMapLayer(self.footprints.id())
        self.footprints = None
        if features:
            self.footprints = layers.footprints_layer(summary["footprints"],
                                                      f"Scenes: {summary['collection']} {summary['date_start']}"
                                                      f"..{summary['date_end']}")
            layers.add_to_group(self.footprints, layers.result_group("GeoStudio availability"))

    def checked_dates(self) -> list[str]:
        return [self.ui.datesList.item(i).data(ROLE) for i in range(self.ui.datesList.count())
                if self.ui.datesList.item(i).checkState() == Qt.CheckState.Checked]

    def fetch_checked(self):  # noqa: ANN201
        request = self._request()
        dates = self.checked_dates()
        if request is None or not dates:
            if request is not None:
                QMessageBox.information(self, "GeoStudio", "Check availability and tick the dates to fetch.")
            return None
        bands = [b.strip() for b in re.split(r"[,;\s]+", self.ui.bandsEdit.text()) if b.strip()]
        spec = contract.fetch_spec(request["connector"], request["collection"], request["bbox"], dates, bands=bands,
                                   maxcc=self.ui.maxccSpin.value(), endpoint=request["endpoint"])
        return self.start_engine_task(f"GeoStudio: fetch {spec['collection']}", contract.FETCH, spec,
                                      self._show_fetched, secrets=credentials.load(spec["connector"]))

    def _show_fetched(self, result: dict[str, Any]) -> None:
        summary: contract.FetchSummary = result["summary"]
        group = layers.result_group(f"GeoStudio fetch: {summary['connector']} / {summary['collection']}")
        self.fetched_layers = []
        for info in summary["files"]:
            layer = QgsRasterLayer(info["path"], f"{summary['collection']} {info['date']}")
            layers.show_bands(layer, info.get("rgb"))
            layers.add_to_group(layer, group)
            self.fetched_layers.append(layer)
        layers.zoom_to(self.iface.mapCanvas(), self.fetched_layers)
        self.ui.availabilityLabel.setText(f"Fetched {len(summary['files'])} date(s) into {result['outputs']['fetch_dir']}")
        show_success("GeoStudio", f"Fetched {summary['collection']} for {len(summary['files'])} date(s).")


def _show_all(item: QTreeWidgetItem) -> None:
    item.setHidden(False)
    for i in range(item.childCount()):
        _show_all(item.child(i))
