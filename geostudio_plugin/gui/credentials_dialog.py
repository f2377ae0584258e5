"""Credentials (and endpoint) of one connector, kept in the QGIS authentication database; Test connection."""

from __future__ import annotations

from typing import Any, Optional

from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox, QLineEdit

from .. import contract, credentials, tasks
from ..paths import ui_file


class CredentialsDialog(QDialog):
    def __init__(self, connector: dict[str, Any], parent=None) -> None:  # noqa: ANN001
        super().__init__(parent)
        uic.loadUi(str(ui_file("credentials_dialog.ui")), self)
        self.connector = connector
        self.task: Optional[tasks.EngineTask] = None
        self.result_summary: Optional[contract.CheckSummary] = None
        self.setWindowTitle(f"{connector['name']}: credentials")
        stored = credentials.load(connector["id"])
        self.fields: dict[str, QLineEdit] = {}
        for item in connector.get("credentials", []):
            edit = QLineEdit(stored.get(item["env"], ""), self)
            edit.setObjectName(f"field_{item['env']}")
            if item.get("secret"):
                edit.setEchoMode(QLineEdit.EchoMode.Password)
            edit.setPlaceholderText(item["env"])
            self.fieldsForm.addRow(item["label"], edit)
            self.fields[item["env"]] = edit
        self.endpointEdit: Optional[QLineEdit] = None
        if connector.get("endpoint_override"):
            self.endpointEdit = QLineEdit(credentials.endpoint(connector["id"]) or "", self)
            self.endpointEdit.setObjectName("endpointEdit")
            self.endpointEdit.setPlaceholderText(connector.get("endpoint", ""))
            self.fieldsForm.addRow("Endpoint URL (empty = default)", self.endpointEdit)
        note = ("No credentials needed." if not self.fields else
                "Stored encrypted in the QGIS authentication database; they reach only the GeoStudio engine "
                "job that uses this connector.")
        if connector.get("credentials_only_for_default_endpoint"):
            note += " Needed only for the default endpoint."
        self.introLabel.setText(f"<b>{connector['name']}</b> ({connector['id']}). {note}")
        self.testButton.clicked.connect(self.test_connection)
        self.clearButton.clicked.connect(self.forget)
        self.clearButton.setEnabled(bool(self.fields) and credentials.configured(connector["id"]))
        self.buttonBox.button(QDialogButtonBox.StandardButton.Save).clicked.connect(self.save)
        self.buttonBox.rejected.connect(self.reject)

    def values(self) -> dict[str, str]:
        return {env: edit.text().strip() for env, edit in self.fields.items() if edit.text().strip()}

    def endpoint(self) -> Optional[str]:
        return self.endpointEdit.text().strip() or None if self.endpointEdit is not None else None

    def save(self) -> None:
        if self.fields:
            credentials.store(self.connector["id"], self.values())
        if self.endpointEdit is not None:
            credentials.set_endpoint(self.connector["id"], self.endpointEdit.text())
        self.accept()

    def forget(self) -> None:
        credentials.clear(self.connector["id"])
        for edit in self.fields.values():
            edit.clear()
        self.clearButton.setEnabled(False)
        self.statusLabel.setText("Stored credentials removed.")

    def test_connection(self) -> Optional[tasks.EngineTask]:
        """Runs the engine's ``check`` with what the fields hold now (saved or not)."""
        if self.task is not None:
            return None
        spec = contract.check_spec(self.connector["id"], self.endpoint())
        self.task = tasks.EngineTask(f"GeoStudio: test {self.connector['name']}", contract.CHECK, spec,
                                     secrets=self.values())
        self.task.succeeded.connect(self._passed)
        self.task.failed.connect(self._failed)  # shown in the dialog, not in the message bar
        self.testButton.setEnabled(False)
        self.statusLabel.setText("Testing…")
        return tasks.start(self.task)

    def _passed(self, result: dict[str, Any]) -> None:
        self.task = None
        self.result_summary = result["summary"]
        self.testButton.setEnabled(True)
        self.statusLabel.setText(f"✔ {self.connector['name']} answered in {result['summary']['latency_ms']} ms.")

    def _failed(self, failure: contract.EngineFailure) -> None:
        self.task = None
        self.testButton.setEnabled(True)
        self.statusLabel.setText(f"✘ {failure.text}")
