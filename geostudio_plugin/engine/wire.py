"""The names both sides of the door share, standard library only.

The engine writes these and the QGIS side reads them; both import this module
(it imports nothing, so the QGIS side can load it without the engine's
environment). README "Engine protocol" describes each.
"""

from __future__ import annotations

# Event kinds: every stdout line of the engine is a JSON object whose "event" is one of these.
EVENT_PROGRESS = "progress"  # stage, fraction (0..1 within the whole command), message
EVENT_LOG = "log"  # level, message
EVENT_METRIC = "metric"  # name, value, and optional epoch, step, stage
EVENT_RESULT = "result"  # outputs (paths), summary (small facts); exactly once, on success
EVENT_ERROR = "error"  # code, message, hint, details, and studio_code for the Studio's numbered codes
EVENTS = (EVENT_PROGRESS, EVENT_LOG, EVENT_METRIC, EVENT_RESULT, EVENT_ERROR)

# Exit codes of ``python -m geostudio_plugin.engine``.
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: the error event says so and stderr holds the traceback
EXIT_USAGE = 2  # unknown command or unreadable spec file
EXIT_INVALID_SPEC = 3  # the spec does not validate; details name each field
EXIT_INPUT = 4  # input data is unusable (missing file, wrong raster, ...)
EXIT_EXTERNAL = 5  # a data connector or other service failed
EXIT_CANCELLED = 130  # stopped by SIGTERM/SIGINT; outputs were rolled back

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug)",
    EXIT_USAGE: "usage: unknown command or unreadable spec",
    EXIT_INVALID_SPEC: "the spec does not validate",
    EXIT_INPUT: "input data unusable",
    EXIT_EXTERNAL: "a connector or other service failed",
    EXIT_CANCELLED: "cancelled",
}

# Workspace record kinds: the folder under the workspace root -> the JSON record in each item's
# folder (None: the item has no record file, e.g. a fetch is its folder of GeoTIFFs).
RECORDS: dict[str, str | None] = {
    "datasets": "dataset.json",
    "tunes": "tune.json",
    "inferences": "inference.json",
    "fetched": None,
    "templates": "template.json",  # user-defined tune templates (+ content.yaml.j2), tuning/user_templates.py
}
KINDS = tuple(RECORDS)
FAILED_DIR = "failed"  # <workspace>/failed/<kind>/*.json: failed attempts, with the error and the log
