"""Processing "Onboard dataset": from fields and from a Studio payload file, through the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES


def test_onboard_dataset_from_fields(plugin, qgis_processing):
    import processing

    result = processing.run("geostudio:onboard_dataset", {
        "NAME": "processing water", "SOURCE": str(SAMPLES / "train"), "PURPOSE": 0,
        "LABEL_SUFFIX": "_LabelHand.tif", "DATA_SUFFIX": "_S1Hand.tif", "MODALITY": "S1GRD", "BANDS": "VV, VH",
        "CATEGORIES": "0:Not water:#d9d9d9, 1:Water:#1f78b4", "IGNORE_ID": -1, "CHIP_SIZE": 256})
    record = json.loads((Path(result["DATASET_FOLDER"]) / "dataset.json").read_text())
    assert record["dataset_id"] == result["DATASET_ID"]
    assert record["n_samples"] == 24 and record["modalities"] == ["S1GRD"]
    assert [c["name"] for c in record["classes"]] == ["Not water", "Water"]
    assert record["training_params"]["S1GRD"]["band_names"] == ["VV", "VH"]
    from qgis.core import QgsApplication  # the toolbox's Fine-tune model lists it at once (workspace_index.changed)

    tune = QgsApplication.processingRegistry().algorithmById("geostudio:tune_model")
    assert result["DATASET_ID"] in tune.parameterDefinition("DATASET").options()


def test_onboard_dataset_from_a_studio_payload_file(plugin, qgis_processing, tmp_path):
    import processing

    payload = json.loads((REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    result = processing.run("geostudio:onboard_dataset", {"PAYLOAD": str(path), "SOURCE": str(SAMPLES / "train")})
    record = json.loads((Path(result["DATASET_FOLDER"]) / "dataset.json").read_text())
    assert record["dataset_name"] == payload["dataset_name"] and record["n_samples"] == 24


def test_onboard_dataset_bad_input_is_explained(plugin, qgis_processing):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="equals a data source's file_suffix"):
        processing.run("geostudio:onboard_dataset", {
            "NAME": "bad", "SOURCE": str(SAMPLES / "train"), "LABEL_SUFFIX": "_S1Hand.tif",
            "DATA_SUFFIX": "_S1Hand.tif", "MODALITY": "S1GRD", "BANDS": "VV, VH",
            "CATEGORIES": "0:Not water, 1:Water"})


@pytest.mark.parametrize("shape", ["marida", "flood"])
def test_studio_payload_shapes_onboard_from_processing(plugin, qgis_processing, tmp_path, shape):
    import shutil
    import sys

    import processing

    sys.path.insert(0, str(REPO / "tests" / "support"))
    from payloads import FLOOD_FILES, MARIDA, flood_payload, marida_payload

    if shape == "marida":
        payload = marida_payload(MARIDA)
    else:
        folder = tmp_path / "flood"
        folder.mkdir()
        for path in FLOOD_FILES:
            shutil.copy(path, folder / path.name)
        payload = flood_payload(folder)
    path = tmp_path / f"{shape}.json"
    path.write_text(json.dumps(payload))
    result = processing.run("geostudio:onboard_dataset", {"PAYLOAD": str(path)})
    record = json.loads((Path(result["DATASET_FOLDER"]) / "dataset.json").read_text())
    assert record["modalities"] == [s["modality_tag"] for s in payload["data_sources"]]
    assert all(record["splits"][k] for k in ("train", "val", "test"))
