"""A dock whose content comes from a Qt Designer file in ``ui/``, loaded at run time."""

from __future__ import annotations

from typing import Any, Callable, Optional

from qgis.gui import QgsDockWidget
from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QFrame, QScrollArea, QWidget

from .. import tasks
from ..paths import ui_file


class UiDock(QgsDockWidget):
    UI_FILE = ""
    TITLE = ""  # short: docks share one tabbed panel
    WIDTH = 420
    OBJECT_NAME = ""
    RUN_BUTTON: "str | tuple[str, ...]" = ""  # widgets that start this dock's engine jobs (the .ui has a progressBar)
    CANCEL_BUTTON = ""

    def __init__(self, iface, parent=None) -> None:  # noqa: ANN001 - QgisInterface
        super().__init__(self.TITLE, parent or iface.mainWindow())
        self.iface = iface
        self.setToolTip(f"GeoStudio: {self.TITLE}")
        self.setObjectName(self.OBJECT_NAME)
        # a scroll area keeps the dock's minimum height small, so it fits beside other docks on any screen
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.content = QWidget(scroll)
        uic.loadUi(str(ui_file(self.UI_FILE)), self.content)
        scroll.setWidget(self.content)
        self.setWidget(scroll)
        self.ui = self.content
        self.task: Optional[tasks.EngineTask] = None
        if self.CANCEL_BUTTON:
            getattr(self.ui, self.CANCEL_BUTTON).clicked.connect(self.cancel_task)

    def start_engine_task(self, description: str, command: str, spec: dict[str, Any],
                          on_success: Callable[[dict[str, Any]], None],
                          on_event: Optional[Callable[[dict[str, Any]], None]] = None,
                          secrets: Optional[dict[str, str]] = None) -> Optional[tasks.EngineTask]:
        """One engine job at a time per dock; the progress bar and the buttons follow it."""
        if self.task is not None:
            return None

        def succeeded(result: dict[str, Any]) -> None:
            self._task_ended(100)
            on_success(result)

        self.task = tasks.EngineTask(description, command, spec, on_success=succeeded, secrets=secrets,
                                     on_failure=lambda _task: self._task_ended(0))
        self.task.progressChanged.connect(lambda value: self.ui.progressBar.setValue(int(value)))
        if on_event is not None:
            self.task.eventReceived.connect(on_event)
        self.ui.progressBar.setValue(0)
        self._set_running(True)
        return tasks.start(self.task)

    def cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _task_ended(self, progress: int) -> None:
        self.task = None
        self.ui.progressBar.setValue(progress)
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        names = (self.RUN_BUTTON,) if isinstance(self.RUN_BUTTON, str) else self.RUN_BUTTON
        for name in names:
            getattr(self.ui, name).setEnabled(not running)
        if self.CANCEL_BUTTON:
            getattr(self.ui, self.CANCEL_BUTTON).setEnabled(running)
