"""The plugin object: menu, toolbar, the four docks, settings and the Processing provider.

Docks are built the first time they are opened, so loading the plugin costs
almost nothing at QGIS start-up. Nothing here imports the engine's libraries.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QMenu, QToolBar

from . import engine_server_client, logs, tasks
from .paths import icon_path

log = logging.getLogger(__name__)

DOCKS = (
    # key, action text, icon, dock area
    ("connectors", "Connectors", "connectors.svg", Qt.DockWidgetArea.RightDockWidgetArea),
    ("onboarding", "Datasets", "dataset.svg", Qt.DockWidgetArea.RightDockWidgetArea),
    ("tuning", "Fine-tuning", "tuning.svg", Qt.DockWidgetArea.RightDockWidgetArea),
    ("inference", "Inference", "inference.svg", Qt.DockWidgetArea.RightDockWidgetArea),
)


class GeoStudioPlugin:
    def __init__(self, iface) -> None:  # noqa: ANN001 - QgisInterface
        self.iface = iface
        self.provider = None
        self.menu: Optional[QMenu] = None
        self.toolbar: Optional[QToolBar] = None
        self.actions: dict[str, QAction] = {}
        self.docks: dict = {}
        self.store = None
        self._wired = False  # the Connectors dock's picks reach the Datasets dock

    # ------------------------------------------------------------ lifecycle
    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        from .processing.provider import GeoStudioProvider

        if self.provider is None:
            self.provider = GeoStudioProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        logs.setup()
        self.initProcessing()
        window = self.iface.mainWindow()
        self.menu = QMenu("&GeoStudio", window)
        self.menu.setObjectName("GeoStudioMenu")
        bar = window.menuBar()
        help_menu = next((a for a in bar.actions() if a.menu() and a.menu().objectName() == "mHelpMenu"), None)
        bar.insertMenu(help_menu, self.menu) if help_menu else bar.addMenu(self.menu)
        self.toolbar = self.iface.addToolBar("GeoStudio")
        self.toolbar.setObjectName("GeoStudioToolbar")
        for key, text, icon, _area in DOCKS:
            action = self._action(text, icon, lambda checked, k=key: self.toggle_dock(k, checked), checkable=True)
            self.actions[key] = action
            self.toolbar.addAction(action)
        self.menu.addSeparator()
        self.actions["settings"] = self._action("Settings…", "settings.svg", lambda _checked: self.open_settings())
        self.actions["help"] = self._action("Help", "geostudio.svg", lambda _checked: self.open_help())
        self.actions["about"] = self._action("About GeoStudio…", "geostudio.svg", lambda _checked: self.open_about())
        tasks.start_warm_engine()  # opt-in (Settings); otherwise the first job starts it

    def _action(self, text: str, icon: str, slot: Callable[[bool], None], checkable: bool = False) -> QAction:
        action = QAction(QIcon(icon_path(icon)), text, self.iface.mainWindow())
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        self.menu.addAction(action)
        return action

    def unload(self) -> None:
        for task in tasks.running():  # Qt disconnects their signals from the docks deleted below
            task.cancel()
        for dock in self.docks.values():
            release = getattr(dock, "release_canvas", None)  # map tools and outlines a dock put on the canvas
            if release is not None:
                release()
            self.iface.removeDockWidget(dock)
            dock.deleteLater()
        self.docks.clear()
        if self.store is not None:
            self.store.deleteLater()
            self.store = None
        if self.toolbar is not None:
            self.toolbar.deleteLater()
        for action in self.actions.values():  # parented to the main window: they would outlive the plugin
            action.deleteLater()
        self.actions.clear()
        if self.menu is not None:
            self.menu.menuAction().setVisible(False)
            self.iface.mainWindow().menuBar().removeAction(self.menu.menuAction())
            self.menu.deleteLater()
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        engine_server_client.stop(wait=False)  # it stops its jobs and ends by itself; a reload starts a new one
        logs.teardown()

    # ------------------------------------------------------------------ docks
    def dock(self, key: str):  # noqa: ANN201 - one of the dock classes
        if key not in self.docks:
            others = list(self.docks.values())
            self.docks[key] = self._build_dock(key)
            area = next(d[3] for d in DOCKS if d[0] == key)
            self.iface.addDockWidget(area, self.docks[key])
            window = self.iface.mainWindow()
            if others:  # one GeoStudio panel with a tab per dock, in the menu's order whatever the opening order
                ordered = [self.docks[k] for k, *_rest in DOCKS if k in self.docks]
                for dock in ordered[1:]:
                    window.tabifyDockWidget(ordered[0], dock)  # each moves to the end of the first's tabs
            else:
                window.resizeDocks([self.docks[key]], [self.docks[key].WIDTH], Qt.Orientation.Horizontal)
            self.docks[key].visibilityChanged.connect(lambda visible, k=key: self.actions[k].setChecked(visible))
            self._wire()
        return self.docks[key]

    def _build_dock(self, key: str):  # noqa: ANN202
        from .gui.catalog_store import CatalogStore

        if self.store is None:
            self.store = CatalogStore(self.iface.mainWindow())
        if key == "connectors":
            from .gui.connectors_dock import ConnectorsDock

            return ConnectorsDock(self.iface, self.store)
        if key == "onboarding":
            from .gui.onboarding_dock import OnboardingDock

            return OnboardingDock(self.iface)
        if key == "tuning":
            from .gui.tuning_dock import TuningDock

            return TuningDock(self.iface, self.store)
        from .gui.inference_dock import InferenceDock

        return InferenceDock(self.iface)

    def _wire(self) -> None:
        """A collection picked in the Connectors dock pre-fills the onboarding form."""
        connectors, onboarding = self.docks.get("connectors"), self.docks.get("onboarding")
        if connectors is not None and onboarding is not None and not self._wired:
            connectors.collectionSelected.connect(onboarding.use_collection)
            self._wired = True

    def toggle_dock(self, key: str, visible: bool = True) -> None:
        dock = self.dock(key)
        dock.setVisible(visible)
        if visible:
            dock.raise_()

    def open_help(self) -> bool:
        """The README (the plugin's homepage) in the browser."""
        from qgis.PyQt.QtCore import QUrl
        from qgis.PyQt.QtGui import QDesktopServices

        from .paths import help_url

        return QDesktopServices.openUrl(QUrl(help_url()))

    def open_about(self):  # noqa: ANN201 - the (non-modal) box, for tests
        """Version, engine and workspace in one box: what a person reports with a problem."""
        from qgis.PyQt.QtWidgets import QMessageBox

        box = QMessageBox(QMessageBox.Icon.Information, "About GeoStudio", about_text(),
                          QMessageBox.StandardButton.Close, self.iface.mainWindow())
        box.setObjectName("geostudioAboutBox")
        box.setModal(False)
        box.show()
        return box

    def open_settings(self) -> None:
        from .gui.settings_dialog import SettingsDialog

        SettingsDialog(self.iface.mainWindow()).exec()


def about_text() -> str:
    """The plugin's version (metadata.txt), the engine in use and the workspace."""
    from . import settings
    from .paths import help_url, metadata

    version = metadata("version") or "?"
    engine = settings.engine_python()
    return (f"GeoStudio for QGIS {version}\n\n"
            f"Engine: {engine if engine else 'not set up (GeoStudio > Settings > Set up engine)'}\n"
            f"Workspace: {settings.workspace()}\n"
            f"Device: {settings.device()}\n\n"
            f"Help: {help_url()}")
