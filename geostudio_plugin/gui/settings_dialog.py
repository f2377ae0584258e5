"""Settings: engine interpreter, device, downloads, the warm engine (state, Stop), workspace; and "Set up engine"
with streamed pip output."""

from __future__ import annotations

from typing import Optional

from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QMessageBox

from .. import engine_runtime, engine_server_client, settings, tasks
from ..contract import EngineFailure
from ..paths import ui_file
from .messages import show_failure, show_success


class SettingsDialog(QDialog):
    def __init__(self, parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        uic.loadUi(str(ui_file("settings_dialog.ui")), self)
        self.setup_task: Optional[tasks.SetupEngineTask] = None
        self.pythonWidget.setFilePath(settings.engine_python_override())
        self.workspaceWidget.setFilePath(str(settings.workspace()))
        self.deviceCombo.setCurrentText(settings.device())
        self.downloadsCheck.setChecked(settings.allow_downloads())
        self.warmCheck.setChecked(settings.warm_engine())
        self.warmAtStartCheck.setChecked(settings.warm_engine_at_start())
        self.warmIdleSpin.setValue(settings.warm_engine_idle_minutes())
        self.warmStopButton.clicked.connect(self.stop_warm_engine)
        self.setupButton.clicked.connect(self.setup_engine)
        self.buttonBox.button(QDialogButtonBox.StandardButton.Save).clicked.connect(self.save)
        self.buttonBox.rejected.connect(self.reject)
        self.refresh_status()

    def refresh_status(self) -> None:
        env_dir = engine_runtime.managed_env_dir()
        python = settings.engine_python()
        self.setupButton.setText("Repair engine…" if python else "Set up engine")
        self.setupButton.setToolTip(
            "The engine is ready; Repair rebuilds its environment from the lock file (downloads again)" if python else
            f"Build the engine's Python environment (downloads {engine_runtime.ENV_SIZE_NOTE})")
        if python:
            state = f"Ready: <code>{python}</code>. Nothing to set up; use Repair only if the engine is broken."
        elif settings.engine_python_override():
            state = f"The chosen interpreter <code>{settings.engine_python_override()}</code> does not exist."
        else:
            state = (f"Not set up. 'Set up engine' builds a Python 3.12 environment in <code>{env_dir}</code> "
                     f"and downloads {engine_runtime.ENV_SIZE_NOTE}.")
        self.engineStatusLabel.setText(state)
        self.refresh_warm_state()

    def refresh_warm_state(self) -> None:
        """Running (pid, memory, jobs served) or stopped; a question of a few milliseconds over the socket."""
        if not engine_server_client.supported():
            self.warmStateLabel.setText("Not available on this platform: each job runs as its own process.")
            self.warmStopButton.setEnabled(False)
            return
        info = engine_server_client.state()
        if info["running"]:
            self.warmStateLabel.setText(
                f"Running: pid {info['pid']}, {info['rss_mb']:.0f} MB, {info['jobs_served']} job(s) served, "
                f"{info['running_jobs']} running now.")
        else:
            self.warmStateLabel.setText("Stopped. The next job starts it (its first job pays the imports).")
        self.warmStopButton.setEnabled(bool(info["running"]))

    def stop_warm_engine(self) -> None:
        engine_server_client.stop(wait=False)  # it cancels its running jobs and ends by itself
        self.refresh_warm_state()

    def save(self) -> None:
        try:
            settings.set_device(self.deviceCombo.currentText())
        except ValueError as exc:
            QMessageBox.warning(self, "GeoStudio", str(exc))
            return
        settings.set_engine_python_override(self.pythonWidget.filePath())
        settings.set_workspace(self.workspaceWidget.filePath())
        settings.set_allow_downloads(self.downloadsCheck.isChecked())
        settings.set_warm_engine(self.warmCheck.isChecked())
        settings.set_warm_engine_at_start(self.warmAtStartCheck.isChecked())
        settings.set_warm_engine_idle_minutes(self.warmIdleSpin.value())
        self.accept()

    def setup_engine(self) -> None:
        if self.setup_task is not None:
            return
        ready = settings.engine_python() is not None
        answer = QMessageBox.question(
            self, "Repair the GeoStudio engine" if ready else "Set up the GeoStudio engine",
            ("The engine is ready. Repair rebuilds its environment in\n" if ready else
             "This creates the engine environment in\n") + f"{engine_runtime.managed_env_dir()}\nand downloads "
            f"{engine_runtime.ENV_SIZE_NOTE}. It takes about 5-20 minutes. Continue?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No if ready else QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.setup_task = tasks.SetupEngineTask()
        self.setup_task.succeeded.connect(self._setup_succeeded)
        self.setup_task.failed.connect(self._setup_failed)
        self.setup_task.lineReceived.connect(self.setupLog.appendPlainText)
        self.setup_task.progressChanged.connect(self._setup_progress)
        self.setup_task.taskCompleted.connect(self._setup_ended)
        self.setup_task.taskTerminated.connect(self._setup_ended)
        self.setupButton.setEnabled(False)
        tasks.start(self.setup_task)

    def _setup_progress(self, value: float) -> None:
        self.setupProgress.setValue(int(value))

    def _setup_succeeded(self, python: object) -> None:
        show_success("GeoStudio", f"Engine ready: {python}")

    def _setup_failed(self, failure: EngineFailure) -> None:
        show_failure("Engine setup failed", failure)

    def _setup_ended(self) -> None:
        self.setup_task = None
        self.setupButton.setEnabled(True)
        self.refresh_status()
