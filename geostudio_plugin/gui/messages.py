"""User messages: the message bar (short, with a Details button) and the GeoStudio log tab (full text)."""

from __future__ import annotations

import logging

from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QMessageBox, QPushButton

log = logging.getLogger("geostudio_plugin")

ERROR_SECONDS = 0  # errors stay until closed
INFO_SECONDS = 6


def _iface():
    from qgis.utils import iface

    return iface


def show_details(title: str, text: str, parent=None) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Critical, title, text.split("\n\n")[0][:500], QMessageBox.StandardButton.Close,
                      parent)
    box.setDetailedText(text)
    box.setModal(False)
    box.show()
    return box


def show_error(title: str, message: str, hint: str = "", details: str = "") -> None:
    text = f"{message} {hint}".strip()
    full = "\n\n".join(p for p in (message, hint, details) if p)
    log.error("%s: %s", title, full)
    bar = _iface().messageBar()
    widget = bar.createMessage(title, text)
    if details:
        button = QPushButton("Details")
        button.setObjectName("geostudioDetailsButton")
        button.clicked.connect(lambda: show_details(title, full, _iface().mainWindow()))
        widget.layout().addWidget(button)
    bar.pushWidget(widget, Qgis.MessageLevel.Critical, ERROR_SECONDS)


def show_info(title: str, message: str) -> None:
    log.info("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Info, INFO_SECONDS)


def show_success(title: str, message: str) -> None:
    log.info("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Success, INFO_SECONDS)


def show_warning(title: str, message: str) -> None:
    log.warning("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Warning, INFO_SECONDS)
