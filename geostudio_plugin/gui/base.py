"""A dock whose content comes from a Qt Designer file in ``ui/``, loaded at run time."""

from __future__ import annotations

from qgis.gui import QgsDockWidget
from qgis.PyQt import uic
from qgis.PyQt.QtWidgets import QFrame, QScrollArea, QWidget

from ..paths import ui_file


class UiDock(QgsDockWidget):
    UI_FILE = ""
    TITLE = ""  # short: docks share one tabbed panel
    WIDTH = 420
    OBJECT_NAME = ""

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
