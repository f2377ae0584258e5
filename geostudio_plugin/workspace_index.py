"""Read what the workspace holds (the engine writes it; QGIS only reads the JSON records)."""

from __future__ import annotations

from pathlib import Path

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


BUILT_IN_TEMPLATES = Path(__file__).resolve().parent / "engine" / "data" / "templates"


def template_ids() -> list[str]:
    """The tune templates the engine knows: the built-in ones (engine/data/templates/<id>.json), then the user's
    (templates/<id>/template.json in the workspace), as Fine-tune model's TEMPLATE list."""
    built_in = sorted(path.stem for path in BUILT_IN_TEMPLATES.glob("*.json"))
    users = [str(record.get("id") or "") for record in _workspace().list("templates", RECORDS["templates"])]
    return built_in + [template for template in users if template and template not in built_in]


PROVIDER_ID = "geostudio"


def changed() -> None:
    """The one call after a job that added or removed a model, a dataset or a template (the docks' tasks and the
    Processing algorithms make it): the Processing provider reloads its algorithms, so the MODEL, DATASET and
    TEMPLATE lists (read from the workspace when an algorithm loads) follow."""
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById(PROVIDER_ID)
    if provider is not None:
        provider.refreshAlgorithms()
