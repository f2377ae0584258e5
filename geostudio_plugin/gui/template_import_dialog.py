"""Import template: a name, the template file and an optional parameter schema, asked for in one small dialog
(the engine then checks the template against the dataset picked in the Fine-tuning dock)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

TEMPLATE_FILTER = ("Templates (*.yaml *.yml *.j2 *.json *.zip);;TerraTorch YAML (*.yaml *.yml *.yaml.j2);;"
                   "Exported template (*.json *.zip)")
SCHEMA_FILTER = "Parameter schema (*.json)"
PURPOSES = (("As the file says (else Other)", ""), ("Segmentation", "Segmentation"), ("Regression", "Regression"),
            ("Other", "Other"))


def name_from_file(path: str) -> str:
    """water.yaml.j2 -> water; my_template.zip -> my template."""
    stem = Path(path).name
    stem = re.sub(r"(\.yaml\.j2|\.yml\.j2|\.yaml|\.yml|\.j2|\.json|\.zip)$", "", stem, flags=re.IGNORECASE)
    return re.sub(r"[_]+", " ", stem).strip()


class TemplateImportDialog(QDialog):
    def __init__(self, dataset_name: str, start_folder: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("templateImportDialog")
        self.setWindowTitle("Import template")
        layout = QFormLayout(self)
        self.fileWidget = QgsFileWidget(self)
        self.fileWidget.setObjectName("templateFileWidget")
        self.fileWidget.setFilter(TEMPLATE_FILTER)
        self.fileWidget.setDefaultRoot(start_folder)
        self.fileWidget.setToolTip("A TerraTorch config (.yaml, or .yaml.j2 with the built-in templates' Jinja "
                                   "variables), or a template exported from GeoStudio or the Studio (.json, .zip)")
        self.nameEdit = QLineEdit(self)
        self.nameEdit.setObjectName("templateNameEdit")
        self.nameEdit.setToolTip("The template's name in the Template list (unique)")
        self.schemaWidget = QgsFileWidget(self)
        self.schemaWidget.setObjectName("schemaFileWidget")
        self.schemaWidget.setFilter(SCHEMA_FILTER)
        self.schemaWidget.setDefaultRoot(start_folder)
        self.schemaWidget.setToolTip("Optional: a JSON Schema of the template's own parameters (the form's fields); "
                                     "an exported template carries its own")
        self.purposeCombo = QComboBox(self)
        self.purposeCombo.setObjectName("purposeCombo")
        for text, value in PURPOSES:
            self.purposeCombo.addItem(text, value)
        self.purposeCombo.setToolTip("The task the template trains: Segmentation or Regression (an exported template "
                                     "says its own)")
        layout.addRow("Template file", self.fileWidget)
        layout.addRow("Name", self.nameEdit)
        layout.addRow("Purpose", self.purposeCombo)
        layout.addRow("Parameter schema", self.schemaWidget)
        note = QLabel(f"Checked against the dataset {dataset_name}: rendered and its model built (about 20 s).", self)
        note.setWordWrap(True)
        layout.addRow(note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addRow(self.buttons)
        self.fileWidget.fileChanged.connect(self._file_changed)
        self.nameEdit.textChanged.connect(lambda _text: self._update())
        self._named_by_file = ""
        self._update()
        self.resize(460, self.sizeHint().height())

    def _file_changed(self, path: str) -> None:
        name = self.nameEdit.text().strip()
        if not name or name == self._named_by_file:  # a name the user typed is kept
            self._named_by_file = name_from_file(path)
            self.nameEdit.setText(self._named_by_file)
        self._update()

    def _update(self) -> None:
        ok = bool(self.path() and self.name())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def path(self) -> str:
        return self.fileWidget.filePath().strip()

    def schema(self) -> str:
        return self.schemaWidget.filePath().strip()

    def name(self) -> str:
        return self.nameEdit.text().strip()

    def purpose(self) -> str:
        """Segmentation, Regression, Other, or "" (the engine takes the export's own, else Other)."""
        return str(self.purposeCombo.currentData() or "")
