"""Processing "Fine-tune model": a real one-epoch tune, a dry run and bad input, through processing.run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _parameters(dataset_id: str, **extra) -> dict:
    return {"NAME": "processing tune", "DATASET": dataset_id, "TEMPLATE": "timm_resnet_seg",
            "BACKBONE": "timm_resnet18", "EPOCHS": 1, "BATCH_SIZE": 4, "LEARNING_RATE": 0.001, "CROP_SIZE": 64,
            "DEVICE": 1, "PARAMETERS": '{"model": {"decode_head": {"channels": 32}}}', **extra}


@pytest.mark.training
def test_fine_tune_model_trains_and_keeps_a_tune(plugin, qgis_processing, trained_tune):
    import processing

    result = processing.run("geostudio:tune_model", _parameters(trained_tune["dataset_id"]))
    folder = Path(result["TUNE_FOLDER"])
    record = json.loads((folder / "tune.json").read_text())
    assert record["tune_id"] == result["TUNE_ID"] and record["status"] == "Finished"
    assert record["base_model_id"] == "timm_resnet18" and record["dataset_id"] == trained_tune["dataset_id"]
    assert record["model_parameters"]["model"]["decode_head"]["channels"] == 32  # the JSON parameters arrived
    assert record["model_parameters"]["data"]["crop_size"] == 64 and record["trainer"]["accelerator"] == "cpu"
    assert Path(result["CHECKPOINT"]).is_file() and Path(result["CHECKPOINT"]).parent.parent == folder
    assert "max_epochs: 1" in Path(result["CONFIG"]).read_text()
    assert record["weights"] == {"origin": "random"}


def test_a_dry_run_writes_the_config_and_trains_nothing(plugin, qgis_processing, trained_tune):
    import processing

    result = processing.run("geostudio:tune_model", _parameters(trained_tune["dataset_id"], DRY_RUN=True,
                                                                 EPOCHS=7, NAME="processing dry"))
    config = Path(result["CONFIG"]).read_text()
    assert "max_epochs: 7" in config and "timm_resnet18" in config
    assert result["CHECKPOINT"] == ""


@pytest.mark.parametrize("change, expected", [
    ({"BACKBONE": "terramind_v1_tiny"}, "timm_resnet18"),  # names the backbones that fit the template
    ({"PARAMETERS": '{"optimizer": {"type": "Fast"}}'}, "model_parameters.optimizer.type"),
    ({"PARAMETERS": '{"runner": {"max_epochs": 5'}, "not valid JSON"),
    ({"PARAMETERS": "[1, 2]"}, "must be a JSON object"),
    ({"DATASET": "no-such-dataset"}, "no-such-dataset"),
    ({"WEIGHTS": "/no/such/weights.pt"}, "/no/such/weights.pt"),
])
def test_bad_input_is_explained(plugin, qgis_processing, trained_tune, change, expected):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=expected.replace(".", r"\.")):
        processing.run("geostudio:tune_model", _parameters(trained_tune["dataset_id"], **change))
