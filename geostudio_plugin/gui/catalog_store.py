"""The engine's catalog (connectors, collections, templates, backbones), loaded once and shared by the docks."""

from __future__ import annotations

from typing import Any, Optional

from qgis.PyQt.QtCore import QObject, pyqtSignal

from .. import credentials, tasks
from ..engine.catalog import connector_facts  # the engine's data file; plain JSON, no engine dependency


class CatalogStore(QObject):
    changed = pyqtSignal(dict)
    failed = pyqtSignal(str)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.catalog: Optional[dict[str, Any]] = None
        self._task: Optional[tasks.EngineTask] = None

    def load(self, force: bool = False) -> None:
        if self.catalog is not None and not force:
            self.changed.emit(self.catalog)
            return
        if self._task is not None:
            return  # a load is under way; its result reaches every listener
        self._task = tasks.EngineTask("GeoStudio: load catalog", "catalog", catalog_spec(),
                                      on_success=self._loaded, on_failure=self._failed)
        tasks.start(self._task)

    def _loaded(self, result: dict[str, Any]) -> None:
        self._task = None
        self.catalog = result["summary"]
        self.changed.emit(self.catalog)

    def _failed(self, task: "tasks.EngineTask") -> None:
        self._task = None
        message = task.outcome.error_text()[0] if task.outcome else str(task.exception)
        self.failed.emit(message)


def catalog_spec() -> dict[str, Any]:
    """Ask for access states; no secret goes into the spec, only whether QGIS holds credentials."""
    endpoints = credentials.endpoints()
    return {"check_access": True, "discover": "IBMResearchSTAC" in endpoints, "endpoints": endpoints,
            "credentials_configured": {c["id"]: credentials.configured(c["id"]) for c in connector_facts()}}
