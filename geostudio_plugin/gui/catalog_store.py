"""The engine's catalog (connectors, collections, templates, backbones), loaded once and shared by the docks."""

from __future__ import annotations

from typing import Any, Optional

from qgis.PyQt.QtCore import QObject, pyqtSignal

from .. import contract, credentials, tasks


class CatalogStore(QObject):
    changed = pyqtSignal(dict)
    failed = pyqtSignal(str)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.catalog: Optional[contract.CatalogSummary] = None
        self._task: Optional[tasks.EngineTask] = None

    def load(self, force: bool = False) -> None:
        if self.catalog is not None and not force:
            self.changed.emit(self.catalog)
            return
        if self._task is not None:
            return  # a load is under way; its result reaches every listener
        self._task = tasks.EngineTask("GeoStudio: load catalog", contract.CATALOG, catalog_spec())
        self._task.succeeded.connect(self._loaded)
        self._task.failed.connect(self._failed)
        tasks.start(self._task)

    def _loaded(self, result: dict[str, Any]) -> None:
        self._task = None
        self.catalog = result["summary"]
        self.changed.emit(self.catalog)

    def _failed(self, failure: contract.EngineFailure) -> None:
        self._task = None
        self.failed.emit(failure.message)


def catalog_spec() -> dict[str, Any]:
    """The user's endpoints and which connectors have credentials in QGIS (never the values), as Processing's
    "List connectors and collections" asks too."""
    return contract.catalog_spec(credentials.endpoints(), credentials.configured_connectors())
