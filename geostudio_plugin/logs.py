"""Route the plugin's ``logging`` records to a "GeoStudio" tab of the QGIS log panel."""

from __future__ import annotations

import logging

from qgis.core import Qgis, QgsMessageLog

TAB = "GeoStudio"
LOGGER_NAME = "geostudio_plugin"

_LEVELS = {
    logging.DEBUG: Qgis.MessageLevel.Info,
    logging.INFO: Qgis.MessageLevel.Info,
    logging.WARNING: Qgis.MessageLevel.Warning,
    logging.ERROR: Qgis.MessageLevel.Critical,
    logging.CRITICAL: Qgis.MessageLevel.Critical,
}


class QgisLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102 - logging API
        try:
            QgsMessageLog.logMessage(self.format(record), TAB, _LEVELS.get(record.levelno, Qgis.MessageLevel.Info),
                                     notifyUser=record.levelno >= logging.WARNING)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_handler: "QgisLogHandler | None" = None


def setup() -> logging.Logger:
    global _handler
    logger = logging.getLogger(LOGGER_NAME)
    if _handler is None:
        _handler = QgisLogHandler()
        _handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(_handler)
        logger.setLevel(logging.INFO)
    return logger


def teardown() -> None:
    global _handler
    if _handler is not None:
        logging.getLogger(LOGGER_NAME).removeHandler(_handler)
        _handler = None
