"""``list``: what the workspace holds (datasets, tunes, inference runs), newest first."""

from __future__ import annotations

from typing import Any

from .wire import RECORDS
from .workspace import Workspace

# the fields of each record worth listing; the full record stays in its JSON file
FIELDS = {
    "datasets": (RECORDS["datasets"], ["dataset_id", "dataset_name", "purpose", "status", "created", "modalities",
                                  "n_samples", "size_bytes", "classes"]),
    "tunes": (RECORDS["tunes"], ["tune_id", "name", "status", "created", "dataset_id", "base_model_id",
                            "tune_template_id", "seconds", "best_val_loss", "test_metrics", "classes", "epochs_run",
                            "resumable", "error"]),
    "inferences": (RECORDS["inferences"], ["inference_id", "status", "created", "tune_id", "model_display_name",
                                      "description", "layers"]),
    "templates": (RECORDS["templates"], ["id", "name", "purpose", "description", "created", "validation"]),
}


def run(spec: None, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    summary: dict[str, Any] = {}
    for kind, (record, fields) in FIELDS.items():
        summary[kind] = [{k: item.get(k) for k in fields} for item in workspace.list(kind, record)]
    summary["failed_datasets"] = workspace.failures("datasets")
    summary["failed_tunes"] = workspace.failures("tunes")  # tunes whose engine died before a checkpoint
    return {"workspace": str(workspace.root)}, summary
