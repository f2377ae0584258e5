"""Workspace records written by hand, for the Processing tests that never start the engine: the algorithms read
the finished models, datasets and templates from these JSON records when they load (workspace_index)."""

from __future__ import annotations

import json
from pathlib import Path


def write_model(workspace: Path, tune_id: str, name: str = "water", created: str = "2026-11-29T10:00:00") -> dict:
    """A finished tune's ``tune.json`` (what makes it a model: status Finished and a checkpoint)."""
    record = {"tune_id": tune_id, "name": name, "status": "Finished", "checkpoint": "checkpoints/best_state.pt",
              "config": "config.yaml", "dataset_id": "ds-1", "created": created}
    folder = workspace / "tunes" / tune_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tune.json").write_text(json.dumps(record))
    return record


def write_dataset(workspace: Path, dataset_id: str, created: str = "2026-11-29T09:00:00") -> dict:
    record = {"dataset_id": dataset_id, "dataset_name": dataset_id, "status": "Succeeded", "created": created}
    folder = workspace / "datasets" / dataset_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(record))
    return record
