"""User messages: the message bar (short; details behind QGIS's own "more" button) and the GeoStudio log
tab (full text). Tasks never call these: the docks and dialogs that start them do."""

from __future__ import annotations

import logging
import re

from qgis.core import Qgis
from qgis.PyQt.QtCore import QTimer

from ..contract import EngineFailure

log = logging.getLogger("geostudio_plugin")

ERROR_SECONDS = 0  # errors stay until closed
INFO_SECONDS = 6


def _iface():
    from qgis.utils import iface

    return iface


# an absolute POSIX or Windows path or a home-relative one, up to a space, quote, bracket or separator (URLs stay)
PATH = re.compile(r"""(?<![\w.:/])((?:[A-Za-z]:[\\/]|/|~/)[^\s'"(),;<>]+)""")
# a message that starts with a path (which may hold spaces) and then says what is wrong with it
QUOTED_PATH = re.compile(r"""(['"])((?:[A-Za-z]:[\\/]|/|~/)[^'"\n]+)\1""")
LEADING_PATH = re.compile(r"""^'?((?:[A-Za-z]:[\\/]|/|~/)[^:'\n]*?)'?:\s+(.+)$""", re.DOTALL)
# QGIS's own notices for a long task that ends (QgisApp::onTaskCompleteShowNotify); ours say more
QGIS_TASK_FAILED = "Task failed"
QGIS_TASK_NOTICES = (QGIS_TASK_FAILED, "Task complete")


def _name(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or path


def lead_with_reason(message: str) -> tuple[str, list[str]]:
    """The message as the bar shows it: the reason first, file names instead of full paths (which push the
    reason out of sight); the full paths are returned for Details. "/a/b/x.tif: has 1 band" ->
    ("has 1 band (x.tif)", ["/a/b/x.tif"])."""
    paths: list[str] = []

    def shorten(match: "re.Match[str]") -> str:
        found = match.group(match.lastindex or 1)
        full = found.rstrip(".:")
        if full not in paths:
            paths.append(full)
        return match.group(0).replace(full, _name(full))

    def shorten_all(value: str) -> str:
        parts = QUOTED_PATH.split(value)  # quoted paths may hold spaces: [text, quote, path, text, ...]
        out = []
        for i in range(0, len(parts), 3):
            out.append(PATH.sub(shorten, parts[i]))
            if i + 2 < len(parts):
                out.append(QUOTED_PATH.sub(shorten, f"{parts[i + 1]}{parts[i + 2]}{parts[i + 1]}"))
        return "".join(out)

    text = message.strip()
    lead = LEADING_PATH.match(text)
    if lead:
        full = lead.group(1)
        paths.append(full)
        reason = lead.group(2).strip()
        text = f"{reason[:1].upper()}{reason[1:]}"
        text = shorten_all(text)
        text = f"{text.rstrip('.')} ({_name(full)})."
    else:
        text = shorten_all(text)
    return text, paths


def show_error(title: str, message: str, hint: str = "", details: str = "") -> None:
    """One message: the reason and the fix in the bar (file names, not full paths); QGIS's "more" button shows
    the job, the full message with its paths and the details."""
    short, paths = lead_with_reason(message)
    text = f"{short} {hint}".strip()
    full = "\n\n".join(p for p in (title, message, hint, "\n".join(f"Path: {p}" for p in paths), details) if p)
    log.error("%s: %s", title, full)
    bar = _iface().messageBar()
    if full != text:
        bar.pushMessage("GeoStudio", text, full, Qgis.MessageLevel.Critical, ERROR_SECONDS)
    else:
        bar.pushMessage("GeoStudio", text, Qgis.MessageLevel.Critical, ERROR_SECONDS)


def drop_qgis_task_notice(description: str) -> None:
    """QGIS 3.22 adds its own "Task failed: <description>" (or "Task complete: …") to the bar when a long task
    ends; it would sit on top of ours and say less. Remove it now and once more after QGIS's queued signals ran.
    (From QGIS 3.26 our tasks carry the Silent flag and QGIS adds nothing.)"""
    def drop() -> None:
        bar = _iface().messageBar()
        for item in list(bar.items()) if hasattr(bar, "items") else []:
            if hasattr(item, "title") and item.title() in QGIS_TASK_NOTICES and item.text() == description:
                bar.popWidget(item)

    drop()
    QTimer.singleShot(0, drop)
    QTimer.singleShot(1000, drop)


def show_failure(title: str, failure: EngineFailure) -> None:
    """A task's failure as the user reads it: a cancel is news, anything else an error, once."""
    drop_qgis_task_notice(title)
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
