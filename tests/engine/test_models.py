"""The model registry: the model card of a finished tune, export-model, import-model (our zip and the Studio's
completed-tune form), delete. Uses the session's one tiny model (``trained``); nothing else is trained."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from conftest import EXIT_INPUT, EXIT_INVALID_SPEC, HOLDOUT_IMAGE, leftovers, run_engine, run_ok


def infer_array(workspace: Path, tune_id: str) -> np.ndarray:
    run = run_ok("infer", {"fine_tuning_id": tune_id, "device": "cpu",
                           "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}}, workspace)
    with rasterio.open(run.result["outputs"]["predictions"][0]) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def models(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace of this module's own holding a copy of the session's tune (a tune folder copied in is a model)."""
    root = tmp_path_factory.mktemp("models")
    workspace = root / "ws"
    (workspace / "tunes").mkdir(parents=True)
    shutil.copytree(trained["tune_dir"], workspace / "tunes" / trained["tune_dir"].name)
    return {"root": root, "workspace": workspace, "tune_id": trained["tune_dir"].name, "record": trained["tune"]}


def labelled_test_pixels(dataset_dir: Path, dataset: dict[str, Any]) -> int:
    """Counted from the label files of the test split, independently of the engine."""
    stems = (dataset_dir / "split_files" / "test_data.txt").read_text().split()
    total = 0
    for stem in stems:
        [label] = [p for p in (dataset_dir / "labels").iterdir() if p.name.startswith(stem + "_")]
        with rasterio.open(label) as src:
            data = src.read(1, masked=True)
        valid = ~np.ma.getmaskarray(data) & (data.filled(dataset["ignore_id"]) != dataset["ignore_id"])
        total += int(valid.sum())
    return total


def test_model_card(trained):
    record, tune_dir, dataset = trained["tune"], trained["tune_dir"], trained["dataset"]
    assert record["model_card"] == "model_card.json"
    card = json.loads((tune_dir / "model_card.json").read_text())
    text = (tune_dir / "MODEL_CARD.md").read_text()
    assert card["tune_id"] == record["tune_id"] and card["dataset"]["dataset_id"] == dataset["dataset_id"]
    assert card["backbone"] == "timm_resnet18" and card["template"] == "timm_resnet_seg"
    assert card["parameters"]["runner"]["max_epochs"] == 1 and card["weights"]["origin"] == "random"
    assert card["training"]["device"] == "cpu" and card["training"]["seconds"] > 0
    # classes with their colours, bands with their scaling
    assert [(c["id"], c["name"], c["color"]) for c in card["classes"]] == [
        (c["id"], c["name"], c["color"]) for c in dataset["classes"]]
    stats = dataset["training_params"]["S1GRD"]
    [modality] = card["modalities"]
    assert [b["name"] for b in modality["bands"]] == ["VV", "VH"]
    assert [b["mean"] for b in modality["bands"]] == stats["norm_means"]
    assert [b["std"] for b in modality["bands"]] == stats["norm_stds"]
    # the confusion matrix counts every labelled test pixel once
    confusion = card["test"]["confusion_matrix"]
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (2, 2) and confusion["ids"] == [0, 1]
    assert matrix.sum() == confusion["labelled_pixels"] == labelled_test_pixels(trained["dataset_dir"], dataset)
    # per-class metrics from the matrix agree with TerraTorch's test metrics
    for k, entry in enumerate(card["test"]["per_class"]):
        assert entry["pixels"] == matrix[k].sum()
        assert entry["iou"] == pytest.approx(record["test_metrics"][f"test/IoU_{entry['name']}"], abs=1e-5)
        assert entry["recall"] == pytest.approx(entry["terratorch"]["Class_Accuracy"], abs=1e-5)
    assert "Confusion matrix" in text and "Water" in text and "#1f78b4" in text and "VV" in text


def test_export_delete_import_infer_is_bitwise_equal(models):
    workspace, tune_id = models["workspace"], models["tune_id"]
    before = infer_array(workspace, tune_id)
    target = models["root"] / "out" / "model.zip"
    export = run_ok("export-model", {"tune_id": tune_id, "output_path": str(target)}, workspace)
    assert export.result["outputs"]["archive"] == str(target) and target.is_file()
    names = set(zipfile.ZipFile(target).namelist())
    assert {"tune.json", "model_card.json", "MODEL_CARD.md", "config.yaml", "config_deploy.yaml"} <= names
    assert any(n.startswith("checkpoints/best-") for n in names) and not any("last.ckpt" in n for n in names)
    assert not list(target.parent.glob(".*part*"))
    run_ok("delete", {"kind": "tunes", "id": tune_id}, workspace)
    assert not (workspace / "tunes" / tune_id).exists()  # the card went with it
    imported = run_ok("import-model", {"archive": target.as_uri()}, workspace)
    summary = imported.result["summary"]
    assert summary["tune_id"] == tune_id and summary["status"] == "Finished" and summary["imported_from"] == "zip"
    record = json.loads((workspace / "tunes" / tune_id / "tune.json").read_text())
    assert record["status"] == "Finished" and record["imported_from"]["form"] == "zip"
    assert record["model_input_data_spec"] == models["record"]["model_input_data_spec"]  # the zip carries it
    assert json.loads((workspace / "tunes" / tune_id / "model_card.json").read_text())["test"]["confusion_matrix"]
    listed = run_ok("list", None, workspace).result["summary"]["tunes"]
    assert [t["status"] for t in listed if t["tune_id"] == tune_id] == ["Finished"]
    after = infer_array(workspace, tune_id)
    assert after.dtype == before.dtype and np.array_equal(after, before)
    assert leftovers(workspace) == []


def test_import_the_studio_form(trained, tmp_path: Path):
    workspace = tmp_path / "ws"
    record = trained["tune"]
    run = run_ok("import-model", {"name": "studio-water",
                                  "tune_config_url": (trained["tune_dir"] / "config_deploy.yaml").as_uri(),
                                  "tune_checkpoint_url": str(trained["tune_dir"] / record["checkpoint"])}, workspace)
    summary = run.result["summary"]
    assert summary["imported_from"] == "studio" and summary["name"] == "studio-water"
    assert [c["name"] for c in summary["classes"]] == ["Not water", "Water"]
    assert any("colour" in n for n in summary["notes"])
    imported = json.loads((Path(run.result["outputs"]["tune_dir"]) / "tune.json").read_text())
    assert imported["data_spec"]["norm_means"] == record["data_spec"]["norm_means"]
    assert imported["data_spec"]["bands"] == [0, 1]
    [entry] = imported["model_input_data_spec"]  # derived from the deploy config: no names, no modality tag
    assert entry["norm_means"] == record["model_input_data_spec"][0]["norm_means"] and entry["modality_tag"] is None
    assert [b["index"] for b in entry["bands"]] == [0, 1] and entry["file_suffix"] == "_S1Hand.tif"
    prediction = infer_array(workspace, summary["tune_id"])
    assert set(np.unique(prediction)) <= {0, 1, 255}  # uint8 ids, 255 = no data


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_bad_models(trained, tmp_path: Path):
    workspace = tmp_path / "ws"
    evil = _zip(tmp_path / "evil.zip", {"tune.json": b"{}", "../evil": b"x"})
    run = run_engine("import-model", {"archive": str(evil)}, workspace)
    assert (run.returncode, run.error["code"]) == (EXIT_INPUT, "model_archive_invalid"), run.describe()
    assert "../evil" in run.error["message"] and not (tmp_path / "evil").exists()
    bare = _zip(tmp_path / "bare.zip", {"config_deploy.yaml": b"model: {}"})
    run = run_engine("import-model", {"archive": str(bare)}, workspace)
    assert run.error["code"] == "model_archive_invalid" and "tune.json" in run.error["message"], run.describe()
    fake = tmp_path / "fake.ckpt"
    fake.write_text("not a checkpoint")
    run = run_engine("import-model", {"tune_config_url": str(trained["tune_dir"] / "config_deploy.yaml"),
                                      "tune_checkpoint_url": str(fake)}, workspace)
    assert (run.returncode, run.error["code"]) == (EXIT_INPUT, "model_checkpoint_invalid"), run.describe()
    assert "fake.ckpt" in run.error["message"]
    run = run_engine("export-model", {"tune_id": "no-such-tune"}, workspace)
    assert (run.returncode, run.error["code"]) == (EXIT_INVALID_SPEC, "unknown_model"), run.describe()
    assert "no-such-tune" in run.error["message"]
    assert leftovers(workspace, "tunes") == []
