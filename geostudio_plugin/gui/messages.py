"""User messages: the message bar (short; details behind QGIS's own "more" button) and the GeoStudio log
tab (full text). Tasks never call these: the docks and dialogs that start them do."""

from __future__ import annotations

import logging

from qgis.core import Qgis

from ..contract import EngineFailure

log = logging.getLogger("geostudio_plugin")

ERROR_SECONDS = 0  # errors stay until closed
INFO_SECONDS = 6


def _iface():
    from qgis.utils import iface

    return iface


def show_error(title: str, message: str, hint: str = "", details: str = "") -> None:
    """The message and hint in the bar; with details, QGIS's "more" button shows them all."""
    text = f"{message} {hint}".strip()
    full = "\n\n".join(p for p in (message, hint, details) if p)
    log.error("%s: %s", title, full)
    bar = _iface().messageBar()
    if details:
        bar.pushMessage(title, text, full, Qgis.MessageLevel.Critical, ERROR_SECONDS)
    else:
        bar.pushMessage(title, text, Qgis.MessageLevel.Critical, ERROR_SECONDS)


def show_failure(title: str, failure: EngineFailure) -> None:
    """A task's failure as the user reads it: a cancel is news, anything else an error."""
    if failure.cancelled:
        show_info("GeoStudio", failure.message)
    else:
        show_error(title, failure.message, hint=failure.hint, details=failure.details)


def show_info(title: str, message: str) -> None:
    log.info("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Info, INFO_SECONDS)


def show_success(title: str, message: str) -> None:
    log.info("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Success, INFO_SECONDS)


def show_warning(title: str, message: str) -> None:
    log.warning("%s: %s", title, message)
    _iface().messageBar().pushMessage(title, message, Qgis.MessageLevel.Warning, INFO_SECONDS)
