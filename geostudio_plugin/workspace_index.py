"""Read what the workspace holds (the engine writes it; QGIS only reads the JSON records)."""

from __future__ import annotations

from . import settings
from .contract import RECORDS, DatasetRecord, FailureRecord, InferenceRecord, TuneRecord, is_model
from .engine.workspace import Workspace  # standard library only, no engine dependency


def _workspace() -> Workspace:
    return Workspace(settings.workspace())


def datasets() -> list[DatasetRecord]:
    return _workspace().list("datasets", RECORDS["datasets"])


def tunes() -> list[TuneRecord]:
    return _workspace().list("tunes", RECORDS["tunes"])


def models() -> list[TuneRecord]:
    """Finished tunes only: what the Inference dock and the inference algorithm offer."""
    return [record for record in tunes() if is_model(record)]


def inferences() -> list[InferenceRecord]:
    return _workspace().list("inferences", RECORDS["inferences"])


def failed_datasets() -> list[FailureRecord]:
    """Onboarding attempts that failed: the reason and the log, never a dataset."""
    return _workspace().failures("datasets")
