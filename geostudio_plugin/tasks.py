"""The QgsTask bridge: engine jobs and engine setup as cancellable background tasks.

Rules (qgis-patterns.md, section 4): everything a task needs is captured in its
constructor on the main thread; ``run()`` touches no layer or widget; results
become layers in ``finished()``, which runs on the main thread.
"""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import engine_runtime, settings
from .engine_client import EngineJob, EngineNotReady, JobOutcome

log = logging.getLogger(__name__)

ResultCallback = Callable[[dict[str, Any]], None]

# Tasks must stay referenced from Python until they end, or finished() may never run (qgis/QGIS#59464).
_alive: set[QgsTask] = set()


def start(task: QgsTask) -> QgsTask:
    _alive.add(task)
    task.taskCompleted.connect(lambda: _alive.discard(task))
    task.taskTerminated.connect(lambda: _alive.discard(task))
    QgsApplication.taskManager().addTask(task)
    return task


def running() -> list[QgsTask]:
    return [t for t in _alive if t.status() in (QgsTask.TaskStatus.Queued, QgsTask.TaskStatus.OnHold,
                                                   QgsTask.TaskStatus.Running)]


class EngineTask(QgsTask):
    """Run one engine command. ``eventReceived`` carries every engine event to the main thread."""

    eventReceived = pyqtSignal(dict)

    def __init__(
        self,
        description: str,
        command: str,
        spec: Optional[dict[str, Any]] = None,
        *,
        on_success: Optional[ResultCallback] = None,
        on_failure: Optional[Callable[["EngineTask"], None]] = None,
        secrets: Optional[dict[str, str]] = None,
        python: Optional[Path] = None,
        workspace: Optional[Path] = None,
        report_errors: bool = True,
    ) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.command = command
        self.job = EngineJob(
            command, spec, python=python or settings.engine_python(), workspace=workspace or settings.workspace(),
            secrets=secrets, allow_downloads=settings.allow_downloads())
        self.on_success = on_success
        self.on_failure = on_failure
        self.report_errors = report_errors
        self.outcome: Optional[JobOutcome] = None
        self.exception: Optional[BaseException] = None
        self.stage = ""

    # worker thread -------------------------------------------------------
    def run(self) -> bool:
        try:
            self.outcome = self.job.run(self._on_event, self.isCanceled)
            return self.outcome.ok
        except Exception as exc:  # noqa: BLE001 - never raise out of run()
            self.exception = exc
            if not isinstance(exc, EngineNotReady):
                log.error("engine task %s crashed:\n%s", self.command, traceback.format_exc())
            return False

    def _on_event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            self.stage = str(event.get("message") or event.get("stage") or "")
            self.setProgress(100.0 * float(event.get("fraction") or 0.0))
        self.eventReceived.emit(event)

    # main thread ---------------------------------------------------------
    def finished(self, result: bool) -> None:
        if result and self.outcome and self.outcome.result is not None:
            log.info("%s finished in %.1f s", self.description(), self.outcome.seconds)
            if self.on_success:
                self.on_success(self.outcome.result)
            return
        if self.on_failure:
            self.on_failure(self)
        if not self.report_errors:
            return
        from .gui.messages import show_error, show_info

        if self.isCanceled() or (self.outcome and self.outcome.cancelled):
            show_info("GeoStudio", f"{self.description()} was cancelled; nothing was kept.")
            return
        if self.exception is not None:
            if isinstance(self.exception, EngineNotReady):
                show_error(self.description(), str(self.exception))
            else:
                show_error(self.description(), f"{type(self.exception).__name__}: {self.exception}",
                           details="".join(traceback.format_exception(self.exception)))
            return
        assert self.outcome is not None
        message, hint, details = self.outcome.error_text()
        tail = self.outcome.stderr_tail(4000)
        full = "\n\n".join(p for p in (details, f"Engine log: {self.outcome.log_path}\n{tail}".rstrip()) if p)
        show_error(self.description(), message, hint=hint, details=full)


class SetupEngineTask(QgsTask):
    """Build the managed engine environment from the lock file, streaming pip's output."""

    lineReceived = pyqtSignal(str)

    def __init__(self, on_success: Optional[Callable[[Path], None]] = None) -> None:
        super().__init__("Set up the GeoStudio engine", QgsTask.Flag.CanCancel)
        self.on_success = on_success
        self.lock = engine_runtime.lock_file()
        self.packages = sum(1 for line in self.lock.read_text().splitlines()
                            if re.match(r"^[A-Za-z0-9_.-]+==", line))
        self.python: Optional[Path] = None
        self.exception: Optional[BaseException] = None
        self._collected = 0
        self._phase = 0.0

    def run(self) -> bool:
        try:
            self.python = engine_runtime.build_env(lock=self.lock, on_line=self._on_line, is_canceled=self.isCanceled)
            return True
        except BaseException as exc:  # noqa: BLE001 - SetupCancelled included
            self.exception = exc
            return False

    def _on_line(self, line: str) -> None:
        if line.startswith("$ ") and "-m venv" in line:
            self._phase = 0.02
        elif line.startswith("$ ") and "--upgrade pip" in line:
            self._phase = 0.05
        elif line.startswith("Collecting ") or line.startswith("Requirement already satisfied"):
            self._collected += 1
            self._phase = max(self._phase, 0.05 + 0.75 * min(1.0, self._collected / max(self.packages, 1)))
        elif line.startswith("Installing collected packages"):
            self._phase = 0.85
        self.setProgress(100.0 * self._phase)
        self.lineReceived.emit(line)

    def finished(self, result: bool) -> None:
        from .gui.messages import show_error, show_info, show_success

        if result and self.python:
            show_success("GeoStudio", f"Engine ready: {self.python}")
            if self.on_success:
                self.on_success(self.python)
        elif isinstance(self.exception, engine_runtime.SetupCancelled) or self.isCanceled():
            show_info("GeoStudio", "Engine setup was cancelled; the unfinished environment was removed.")
        elif self.exception is not None:
            hint = getattr(self.exception, "hint", "")
            show_error("Engine setup failed", getattr(self.exception, "message", str(self.exception)), hint=hint)
