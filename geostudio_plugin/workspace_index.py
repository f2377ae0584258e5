"""Read what the workspace holds (the engine writes it; QGIS only reads the JSON records)."""

from __future__ import annotations

from typing import Any

from . import settings
from .engine.workspace import Workspace  # standard library only, no engine dependency


def _workspace() -> Workspace:
    return Workspace(settings.workspace())


def datasets() -> list[dict[str, Any]]:
    return _workspace().list("datasets", "dataset.json")


def tunes() -> list[dict[str, Any]]:
    return _workspace().list("tunes", "tune.json")


def inferences() -> list[dict[str, Any]]:
    return _workspace().list("inferences", "inference.json")


def failed_datasets() -> list[dict[str, Any]]:
    """Onboarding attempts that failed: the reason and the log, never a dataset."""
    return _workspace().failures("datasets")
