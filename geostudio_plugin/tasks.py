"""The QgsTask bridge: engine jobs and engine setup as cancellable background tasks.

Everything a task needs is captured in its constructor on the main thread; ``run()`` touches no layer
or widget. A task reports only through Qt signals, emitted in ``finished()`` on the main thread:
``succeeded`` with the result, ``failed`` with a ``contract.EngineFailure``. Whoever started it (a dock,
a dialog) decides what the user sees; a receiver that is deleted is disconnected by Qt.
"""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path
from typing import Any, Optional

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import contract, engine_runtime, engine_server_client, settings, workspace_index
from .contract import EngineFailure, is_progress
from .engine_client import EngineJob, EngineNotReady, JobOutcome

log = logging.getLogger(__name__)

# Commands whose end (finished, failed or cancelled) may add or remove a model, a dataset or a template.
WORKSPACE_COMMANDS = frozenset({contract.ONBOARD, contract.TUNE, contract.IMPORT_MODEL, contract.DELETE,
                                contract.TEMPLATE_IMPORT})

# Tasks must stay referenced from Python until they end, or finished() may never run (qgis/QGIS#59464).
_alive: set[QgsTask] = set()


def engine_task_flags():  # noqa: ANN201 - QgsTask.Flags
    """Cancellable; and Silent where QGIS has it (3.26+): the dock that started the task says how it ended, so
    QGIS adds no "Task failed" notice of its own (on 3.22 gui.messages removes that notice)."""
    silent = getattr(QgsTask.Flag, "Silent", None)
    return QgsTask.Flag.CanCancel | silent if silent is not None else QgsTask.Flag.CanCancel


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
    """Run one engine command. ``eventReceived`` carries every engine event to the main thread;
    ``succeeded`` the result event, ``failed`` an EngineFailure (also when cancelled: ``cancelled`` is set)."""

    eventReceived = pyqtSignal(dict)
    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(object)

    def __init__(
        self,
        description: str,
        command: str,
        spec: Optional[dict[str, Any]] = None,
        *,
        secrets: Optional[dict[str, str]] = None,
        python: Optional[Path] = None,
        workspace: Optional[Path] = None,
    ) -> None:
        super().__init__(description, engine_task_flags())
        self.command = command
        self.job = EngineJob(
            command, spec, python=python or settings.engine_python(), workspace=workspace or settings.workspace(),
            secrets=secrets, allow_downloads=settings.allow_downloads(), warm=settings.warm_engine(),
            idle_s=60.0 * settings.warm_engine_idle_minutes())
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
        if is_progress(event):
            self.stage = str(event.get("message") or event.get("stage") or "")
            self.setProgress(100.0 * float(event.get("fraction") or 0.0))
        self.eventReceived.emit(event)

    # main thread ---------------------------------------------------------
    def finished(self, result: bool) -> None:
        if self.command in WORKSPACE_COMMANDS:  # before the dock hears of it: the Processing lists follow
            workspace_index.changed()
        if result and self.outcome and self.outcome.result is not None:
            log.info("%s finished in %.1f s", self.description(), self.outcome.seconds)
            self.succeeded.emit(self.outcome.result)
        else:
            self.failed.emit(self.failure())

    def failure(self) -> EngineFailure:
        """Why there is no result: cancelled, no engine, a crash of the bridge, or the engine's error."""
        if self.isCanceled() or (self.outcome and self.outcome.cancelled):
            log_path = str(self.outcome.log_path) if self.outcome and self.outcome.log_path else None
            return EngineFailure(f"{self.description()} was cancelled; its unfinished outputs were removed.", cancelled=True,
                                 log_path=log_path)
        if isinstance(self.exception, EngineNotReady):
            return EngineFailure(str(self.exception))
        if self.exception is not None:
            return EngineFailure(f"{type(self.exception).__name__}: {self.exception}",
                                 details="".join(traceback.format_exception(self.exception)))
        assert self.outcome is not None
        failure = self.outcome.failure()
        tail = self.outcome.stderr_tail(4000)
        log_text = f"Engine log: {self.outcome.log_path}\n{tail}".rstrip()
        return EngineFailure(failure.message, failure.hint, "\n\n".join(p for p in (failure.details, log_text) if p),
                             failure.code, failure.cancelled, failure.log_path, failure.exit_code)


class WarmEngineTask(QgsTask):
    """Start the warm engine in the background (Settings: "Start it when QGIS starts"): the imports happen
    before the first job instead of during it. Silent; a failure only means jobs run as their own processes."""

    def __init__(self) -> None:
        super().__init__("Start the GeoStudio engine", engine_task_flags())
        self.python = settings.engine_python()
        self.env = engine_runtime.engine_environ(allow_downloads=settings.allow_downloads())
        self.idle_s = 60.0 * settings.warm_engine_idle_minutes()
        self.log_dir = engine_runtime.user_data_dir() / "logs"

    def run(self) -> bool:
        if self.python is None or not engine_server_client.supported():
            return False
        try:
            engine_server_client.warm_server(self.python, self.env, {}, idle_s=self.idle_s, log_dir=self.log_dir,
                                             is_canceled=self.isCanceled)
        except (engine_server_client.ServerUnavailable, OSError) as exc:
            log.info("the warm engine did not start: %s", exc)
            return False
        return True


def start_warm_engine() -> Optional[WarmEngineTask]:
    """The opt-in start at QGIS start-up, when the engine is set up and the platform has a fork server."""
    if not (settings.warm_engine() and settings.warm_engine_at_start() and settings.engine_python()
            and engine_server_client.supported()):
        return None
    task = WarmEngineTask()
    start(task)
    return task


class SetupEngineTask(QgsTask):
    """Build the managed engine environment from the lock file, streaming pip's output.
    ``succeeded`` carries the engine's Python (a Path), ``failed`` an EngineFailure."""

    lineReceived = pyqtSignal(str)
    succeeded = pyqtSignal(object)
    failed = pyqtSignal(object)

    def __init__(self) -> None:
        super().__init__("Set up the GeoStudio engine", QgsTask.Flag.CanCancel)
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
        if result and self.python:
            self.succeeded.emit(self.python)
        elif isinstance(self.exception, engine_runtime.SetupCancelled) or self.isCanceled():
            self.failed.emit(EngineFailure("Engine setup was cancelled; the unfinished environment was removed.",
                                           cancelled=True))
        else:
            exc = self.exception
            message = str(getattr(exc, "message", exc)) if exc is not None else "Engine setup failed."
            self.failed.emit(EngineFailure(message, str(getattr(exc, "hint", "") or "")))
