"""A dock whose content comes from a Qt Designer file in ``ui/``, loaded at run time."""

from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QWidget

from ..paths import ui_file


class UiDock(QgsDockWidget):
    UI_FILE = ""
    TITLE = ""
    OBJECT_NAME = ""

    def __init__(self, iface, parent=None) -> None:  # noqa: ANN001 - QgisInterface
        super().__init__(self.TITLE, parent or iface.mainWindow())
        self.iface = iface
        self.setObjectName(self.OBJECT_NAME)
        self.content = QWidget(self)
        uic.loadUi(str(ui_file(self.UI_FILE)), self.content)
        self.setWidget(self.content)
        self.ui = self.content
