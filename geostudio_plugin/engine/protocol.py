"""The engine's side of the door: JSON lines on stdout, one event per line.

Events (every line is an object with an ``event`` key):
  progress  stage, fraction (0..1 within the whole command), message
  log       level, message
  metric    name, value, and optional epoch, step, stage
  result    outputs (paths), summary (small facts)
  error     code, message, hint, details, and studio_code where the Studio numbers the error
            (every code, its exit status and what the user does: ``errors``)

Libraries print to stdout too (Lightning's model summary, tqdm, C code).
``claim_stdout`` keeps the real stdout for the protocol and points file
descriptor 1 at stderr, so nothing but events ever reaches the reader.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
from typing import Any, Iterable, Optional, TextIO
from urllib.parse import quote, quote_plus

from . import errors
# Exit codes live in ``wire`` (shared with the QGIS side); re-exported here.
from .wire import (  # noqa: F401 - re-exported names
    EVENT_ERROR, EVENT_LOG, EVENT_METRIC, EVENT_PROGRESS, EVENT_RESULT, EXIT_CANCELLED, EXIT_EXTERNAL, EXIT_INPUT,
    EXIT_INTERNAL, EXIT_INVALID_SPEC, EXIT_OK, EXIT_USAGE,
)

_lock = threading.Lock()
_stream: TextIO = sys.stdout
_secrets: list[str] = []
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def set_secrets(values: Iterable[str]) -> None:
    """Credential values of this job: replaced by *** in every event and in the log."""
    global _secrets
    forms = set()
    for value in values:
        if value and len(value) >= 4:  # as written, inside JSON, and URL-encoded (a key carried in a query string)
            forms.update({value, json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value), quote(value)})
    _secrets = sorted(forms, key=len, reverse=True)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return _BEARER.sub(r"\1***", text)


class RedactingStream:
    """A text stream wrapper that redacts secrets before writing (stderr: the job's log)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def claim_stdout() -> None:
    """Reserve the original stdout for protocol events; send everything else to stderr."""
    global _stream
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    _stream = os.fdopen(protocol_fd, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr


def json_safe(value: Any) -> Any:
    """Plain JSON values: NaN and infinity become null, numpy scalars and paths become Python values."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return json_safe(value.item())
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    return value


def emit(event: str, **fields: Any) -> None:
    line = redact(json.dumps({"event": event, **json_safe(fields)}, ensure_ascii=False))
    with _lock:
        _stream.write(line + "\n")
        _stream.flush()


def progress(stage: str, fraction: float, message: str = "") -> None:
    emit("progress", stage=stage, fraction=round(max(0.0, min(1.0, fraction)), 4), message=message)


def log(message: str, level: str = "info") -> None:
    emit("log", level=level, message=message)


def metric(name: str, value: float, epoch: Optional[int] = None, step: Optional[int] = None, stage: str = "") -> None:
    emit("metric", name=name, value=value, epoch=epoch, step=step, stage=stage)


def result(outputs: dict[str, Any], summary: Optional[dict[str, Any]] = None) -> None:
    emit("result", outputs=outputs, summary=summary or {})


class EngineError(Exception):
    """An error the user can act on: a code, a message naming what is wrong, a hint saying how to fix it.

    ``code`` is a name of the ``errors`` table (a Studio number such as "0002" is taken as its name); the exit
    status is the table's unless given, and the class's for a code the table lacks.
    """

    exit_code = EXIT_INPUT

    def __init__(self, code: str, message: str, hint: str = "", details: Optional[list] = None,
                 exit_code: Optional[int] = None) -> None:
        super().__init__(message)
        entry = errors.lookup(code)
        self.code = entry.code if entry else code
        self.studio_code = entry.studio_code if entry else None
        self.message = message
        self.hint = hint
        self.details = details or []
        if exit_code is not None:
            self.exit_code = exit_code
        elif entry is not None:
            self.exit_code = entry.exit

    def fields(self) -> dict[str, Any]:
        """The error event's fields (also kept in failure records)."""
        studio = {"studio_code": self.studio_code} if self.studio_code else {}
        return {"code": self.code, **studio, "message": self.message, "hint": self.hint, "details": self.details}

    def emit(self) -> None:
        emit("error", **self.fields())


class SpecError(EngineError):
    exit_code = EXIT_INVALID_SPEC


class ExternalError(EngineError):
    exit_code = EXIT_EXTERNAL


class Cancelled(BaseException):
    """Raised in the main thread on SIGTERM/SIGINT; BaseException so library code does not swallow it."""


class ProtocolLogHandler(logging.Handler):
    """Forward the engine's own log records as ``log`` events (warnings and up from libraries go to stderr)."""

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102 - logging API
        try:
            log(self.format(record), record.levelname.lower())
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)
