"""The onboarded dataset a tune or a template check reads: its dataset.json, with the fields they need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..protocol import SpecError
from ..workspace import Workspace, read_record


def load_dataset(workspace: Workspace, dataset_id: str) -> tuple[dict[str, Any], Path]:
    folder = workspace.find("datasets", dataset_id)
    if folder is None or not (folder / "dataset.json").is_file():
        known = [str(d["dataset_id"]) for d in workspace.list("datasets", "dataset.json") if d.get("dataset_id")]
        raise SpecError("unknown_dataset", f"dataset_id '{dataset_id}' is not in the workspace {workspace.root}.",
                        "Onboard it first, or use one of: " + (", ".join(known) or "(no datasets yet)"))
    required = ("dataset_id", "dataset_name", "purpose", "modalities", "training_params", "data_sources", "splits",
                "classes", "ignore_id")
    return read_record(folder / "dataset.json", f"dataset {dataset_id}", required), folder
