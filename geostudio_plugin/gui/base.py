"""A dock whose content comes from a Qt Designer file in ``ui/``, loaded at run time."""

from __future__ import annotations

from typing import Any, Callable, Optional

from qgis.gui import QgsDockWidget
from qgis.PyQt import uic
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QComboBox, QFrame, QHBoxLayout, QScrollArea, QToolButton, QWidget

from .. import tasks
from .. import contract
from ..contract import EngineFailure
from ..paths import help_url, ui_file
from .messages import drop_qgis_task_notice, show_failure


class UiDock(QgsDockWidget):
    UI_FILE = ""
    TITLE = ""  # short: docks share one tabbed panel
    WIDTH = 420
    OBJECT_NAME = ""
    RUN_BUTTON: "str | tuple[str, ...]" = ""  # widgets that start this dock's engine jobs (the .ui has a progressBar)
    CANCEL_BUTTON = ""
    TOOLTIPS: "dict[str, str]" = {}  # widget name -> tooltip, for the inputs the .ui leaves without one
    HELP_SECTION = "the-docks"  # the README section the Help button opens (each dock names its own)

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
        for name, tip in self.TOOLTIPS.items():
            widget = getattr(self.ui, name)
            if not widget.toolTip():
                widget.setToolTip(tip)
        self._add_help_button()
        self._fit_width(scroll)
        self.task: Optional[tasks.EngineTask] = None
        self._on_success: Optional[Callable[[dict[str, Any]], None]] = None  # the running task's result handler
        self._on_failure: Optional[Callable[[EngineFailure], None]] = None  # and its failure/cancel handler
        if self.CANCEL_BUTTON:
            getattr(self.ui, self.CANCEL_BUTTON).clicked.connect(self.cancel_task)

    def _add_help_button(self) -> None:
        """A Help button at the top right of every dock: the README's section about it, in the browser."""
        self.helpButton = QToolButton(self.content)
        self.helpButton.setObjectName("helpButton")
        self.helpButton.setText("Help")
        self.helpButton.setToolTip(f"How the {self.TITLE} tab works (opens the GeoStudio README in the browser)")
        self.helpButton.clicked.connect(lambda: self.open_help())
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.helpButton)
        self.content.layout().insertLayout(0, row)

    def help_url(self) -> str:
        return help_url(self.HELP_SECTION)

    def open_help(self) -> bool:
        return QDesktopServices.openUrl(QUrl(self.help_url()))

    def _fit_width(self, scroll: QScrollArea) -> None:
        """Never clipped sideways: combo boxes elide long entries instead of widening the panel, and the dock
        cannot be made narrower than its controls need (it scrolls only vertically)."""
        for combo in self.content.findChildren(QComboBox):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(min(combo.minimumContentsLength() or 12, 12))
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.content.adjustSize()
        bar = scroll.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(self.content.minimumSizeHint().width() + bar + 8)

    def start_engine_task(self, description: str, command: str, spec: dict[str, Any],
                          on_success: Callable[[dict[str, Any]], None],
                          on_event: Optional[Callable[[dict[str, Any]], None]] = None,
                          secrets: Optional[dict[str, str]] = None,
                          on_failure: Optional[Callable[[EngineFailure], None]] = None) -> Optional[tasks.EngineTask]:
        """One engine job at a time per dock; the progress bar and the buttons follow it. The task's
        signals reach this dock's methods (``on_success``, ``on_event`` are methods too), so Qt drops
        them if the dock is deleted first. A failure is shown in the message bar."""
        if self.task is not None:
            return None
        self.task = tasks.EngineTask(description, command, spec, secrets=secrets)
        self._on_success = on_success
        self._on_failure = on_failure
        self.task.succeeded.connect(self._task_succeeded)
        self.task.failed.connect(self._task_failed)
        self.task.progressChanged.connect(self._show_progress)
        self.task.eventReceived.connect(self._busy_while_loading)
        if on_event is not None:
            self.task.eventReceived.connect(on_event)
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setFormat("%p%")
        self._set_running(True)
        return tasks.start(self.task)

    def _busy_while_loading(self, event: dict[str, Any]) -> None:
        """Loading TerraTorch or a model takes tens of seconds without a percentage: the bar shows it is busy
        (a moving bar) instead of sitting still at 2-3 %."""
        if contract.is_progress(event):
            loading = event.get("stage") == "load"
            self.ui.progressBar.setRange(0, 0 if loading else 100)

    def _show_progress(self, value: float) -> None:
        self.ui.progressBar.setValue(int(value))

    def _task_succeeded(self, result: dict[str, Any]) -> None:
        if self.task is not None:  # our own success message says more than QGIS's "Task complete"
            drop_qgis_task_notice(self.task.description())
        handler = self._on_success
        self._task_ended(100, "Done")
        if handler is not None:
            handler(result)

    def _task_failed(self, failure: EngineFailure) -> None:
        description = self.task.description() if self.task is not None else self.TITLE
        handler = self._on_failure
        self._task_ended(0, "Cancelled" if failure.cancelled else "Failed")
        show_failure(description, failure)
        if handler is not None:
            handler(failure)

    def cancel_task(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _task_ended(self, progress: int, state: str = "") -> None:
        self.task = None
        self._on_success = None
        self._on_failure = None
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(progress)
        self.ui.progressBar.setFormat(state or "%p%")
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        names = (self.RUN_BUTTON,) if isinstance(self.RUN_BUTTON, str) else self.RUN_BUTTON
        for name in names:
            getattr(self.ui, name).setEnabled(not running)
        if self.CANCEL_BUTTON:
            getattr(self.ui, self.CANCEL_BUTTON).setEnabled(running)
