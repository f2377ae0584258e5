"""What a model reads, per modality (``model_input_data_spec``), and how inference matches rasters to a multi-modal
model's modalities: the record builder on a real rendered template, the Studio-config derivation, the matching
and the per-scene checks. No torch: each case runs in milliseconds; rasters are tiny files written here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geostudio_plugin.engine.catalog import find_backbone, find_template
from geostudio_plugin.engine.inference.input_spec import input_specs, model_input_data_spec
from geostudio_plugin.engine.inference.modalities import check_scene, match_scenes, modality_inputs
from geostudio_plugin.engine.models import _studio_record, read_config
from geostudio_plugin.engine.protocol import EngineError
from geostudio_plugin.engine.tuning.render import build_context, merge_parameters, render
from geostudio_plugin.engine.tuning.spec import TuneSpec
from geostudio_plugin.engine.tuning.tune import base_record, rendered_data_args

NAMES = ["B1", "Blue", "Green", "Red", "B5", "B6", "B7", "NIR", "B8A", "B9", "SWIR1"]
PICKED = [1, 2, 3, 7, 10]  # the file bands onboarding kept (as MARIDA's HLS-like subset does)


def one_modality_dataset() -> dict[str, Any]:
    """A dataset.json as onboarding writes it: one S2L2A source of 11 file bands, 5 of them kept."""
    roles = {"Blue": "B", "Green": "G", "Red": "R"}
    bands = [{"index": i, "band_name": NAMES[i], "RGB_band": roles.get(NAMES[i]), "scaling_factor": 0.0001,
              "description": ""} for i in PICKED]
    return {
        "dataset_id": "d-1", "dataset_name": "one modality", "purpose": "Segmentation", "modalities": ["S2L2A"],
        "data_sources": [{"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
                          "file_suffix": ".tif", "bands": bands, "align_dates": False, "scaling_factor": None,
                          "transform": None}],
        "training_params": {
            "S2L2A": {"norm_means": [0.1, 0.2, 0.3, 0.4, 0.5], "norm_stds": [0.01, 0.02, 0.03, 0.04, 0.05],
                      "bands": PICKED, "band_names": [NAMES[i] for i in PICKED], "band_count": 11,
                      "scaling_factors": [0.0001] * 5, "rgb_indices": [2, 1, 0], "nodata": -9999.0,
                      "file_suffix": "*.tif", "train_data_dir": "training_data/S2L2A", "train_labels_dir": "labels",
                      "align_dates": False},
            "train_split_path": "split_files/train_data.txt", "val_split_path": "split_files/val_data.txt",
            "test_split_path": "split_files/test_data.txt", "classes": ["0", "1"], "class_weights": None,
            "label_suffix": "*_cl.tif"},
        "splits": {"train": ["a"], "val": ["b"], "test": ["c"]},
        "classes": [{"index": 0, "id": 1, "name": "land", "color": "#000000", "opacity": 1.0},
                    {"index": 1, "id": 2, "name": "water", "color": "#1f78b4", "opacity": 1.0}],
        "ignore_id": 0,
    }


def test_the_record_of_a_one_modality_tune_keeps_data_spec(tmp_path: Path):
    """Built from the timm_resnet_seg template rendered for the dataset: data_spec has the keys and values it had
    before model_input_data_spec (its data_source now the entry's Studio fields), and is model_input_data_spec's
    one entry seen the old way."""
    dataset = one_modality_dataset()
    template, backbone = find_template("timm_resnet_seg"), find_backbone("timm_resnet18")
    params = merge_parameters(template["model_params"], {"data": {"constant_multiply": 2.0}})
    trainer = {"accelerator": "cpu", "devices": 1, "precision": "32"}
    context = build_context(tune_id="t-1", params=params, dataset=dataset, dataset_dir=tmp_path, backbone=backbone,
                            run_dir=tmp_path / "run", trainer=trainer, seed=0)
    data_args = rendered_data_args(render(template, context))
    spec = TuneSpec(name="unit-test", dataset_id="d-1", base_model_id="timm_resnet18",
                    tune_template_id="timm_resnet_seg")
    record = base_record(spec, "t-1", dataset, backbone, template, params, trainer, data_args)
    modality = dataset["training_params"]["S2L2A"]
    old = {"modality_tag": "S2L2A", "bands": modality["bands"], "band_names": modality["band_names"],
           "band_count": 11, "norm_means": modality["norm_means"], "norm_stds": modality["norm_stds"],
           "constant_scale": 2.0, "nodata": -9999.0, "file_suffix": "*.tif"}
    data_spec = dict(record["data_spec"])
    source = data_spec.pop("data_source")
    assert data_spec == old
    assert source["connector"] == "sentinel_aws" and [b["index"] for b in source["bands"]] == PICKED
    [entry] = record["model_input_data_spec"]
    assert (entry["modality_tag"], entry["file_suffix"], entry["band_count"]) == ("S2L2A", ".tif", 11)
    assert entry["bands"] == [{"index": i, "band_name": NAMES[i], "RGB_band": {"Blue": "B", "Green": "G",
                                                                              "Red": "R"}.get(NAMES[i]),
                               "scaling_factor": 0.0001} for i in PICKED]
    assert (entry["constant_scale"], entry["no_data_replace"], entry["nodata"]) == (2.0, 0.0, -9999.0)
    assert input_specs(data_args, dataset) == (record["model_input_data_spec"], record["data_spec"])


MULTI = {  # a multi-modal datamodule's data.init_args as config_deploy.yaml keeps them (no dataset at hand)
    "modalities": ["S2L1C", "S1GRD"],
    "image_grep": {"S1GRD": "*_S1Hand.tif", "S2L1C": "*_S2Hand.tif"},
    "dataset_bands": {"S1GRD": [0, 1], "S2L1C": list(range(13))},
    "output_bands": {"S1GRD": [0, 1], "S2L1C": [1, 2, 3]},
    "means": {"S1GRD": [-11.0, -19.0], "S2L1C": [1200.0, 1100.0, 1000.0]},
    "stds": {"S1GRD": [6.0, 6.5], "S2L1C": [200.0, 300.0, 400.0]},
    "constant_scale": {"S1GRD": 1.0, "S2L1C": 0.5},
    "no_data_replace": 0,
}


def test_a_multimodal_deploy_config_gives_every_modality_in_the_models_order():
    s2, s1 = model_input_data_spec(MULTI)
    assert (s2["modality_tag"], s2["file_suffix"], [b["index"] for b in s2["bands"]]) == ("S2L1C", "_S2Hand.tif",
                                                                                         [1, 2, 3])
    assert (s2["constant_scale"], s2["norm_stds"], s2["band_count"]) == (0.5, [200.0, 300.0, 400.0], 13)
    assert (s1["modality_tag"], s1["file_suffix"], s1["no_data_replace"]) == ("S1GRD", "_S1Hand.tif", 0.0)
    assert all(b["band_name"] is None for b in s1["bands"]) and s1["connector"] is None
    _, data_spec = input_specs(MULTI)
    assert data_spec["modality_tag"] == "S2L1C" and data_spec["bands"] == [1, 2, 3] and data_spec["band_names"] == []


def test_the_studio_form_of_a_multimodal_model_is_read_per_modality(tmp_path: Path):
    """import-model's Studio form: a multi-modal config_deploy.yaml is accepted, its record lists both modalities,
    and the notes say per modality what the config does not hold."""
    import yaml

    path = tmp_path / "config_deploy.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"class_path": "terratorch.tasks.SemanticSegmentationTask",
                  "init_args": {"class_names": ["dry", "flood"], "ignore_index": -1,
                                "model_args": {"backbone": "terramind_v1_tiny", "num_classes": 2}}},
        "data": {"class_path": "terratorch.datamodules.GenericMultiModalDataModule", "init_args": MULTI}}))
    record, notes = _studio_record(read_config(path, "tune_config_url"), "best.ckpt", "imported-mm", "")
    assert [m["modality_tag"] for m in record["model_input_data_spec"]] == ["S2L1C", "S1GRD"]
    assert record["model_input_data_spec"] == model_input_data_spec(MULTI)
    data_spec = record["data_spec"]
    assert (data_spec["modality_tag"], data_spec["norm_means"]) == ("S2L1C", MULTI["means"]["S2L1C"])
    assert any(n.startswith("modality S2L1C: band names are not in config_deploy.yaml") and "2, 3, 4" in n
               for n in notes), notes
    assert any(n.startswith("modality S1GRD: band names") for n in notes) and any("connector" in n for n in notes)
    lists_and_dicts = dict(MULTI, stds=[1.0, 2.0])  # means per modality, stds one list: not TerraTorch's
    path.write_text(yaml.safe_dump({"model": {"class_path": "x", "init_args": {}},
                                    "data": {"class_path": "y", "init_args": lists_and_dicts}}))
    with pytest.raises(EngineError) as caught:
        read_config(path, "tune_config_url")
    assert caught.value.code == "model_config_invalid" and "one list per modality" in caught.value.message


RECORD = {"tune_id": "mm-1"}
S1, S2 = "/data/Spain_7370579_S1Hand.tif", "/other/Spain_7370579_S2Hand.tif"


def modalities() -> list[Any]:
    return modality_inputs({"data": {"init_args": MULTI}}, RECORD)


def test_rasters_are_matched_to_modalities_by_suffix_then_by_order():
    scenes = match_scenes(["/a/Ghana_1_S2Hand.tif", S1, "/a/Ghana_1_S1Hand.tif", S2], modalities(), RECORD)
    assert scenes == [("Ghana_1", {"S2L1C": "/a/Ghana_1_S2Hand.tif", "S1GRD": "/a/Ghana_1_S1Hand.tif"}),
                      ("Spain_7370579", {"S2L1C": S2, "S1GRD": S1})]
    assert list(scenes[1][1]) == ["S2L1C", "S1GRD"]  # the model's order, whatever the urls' order
    assert match_scenes(["/x/optical.tif", "/x/radar.tif"], modalities(), RECORD) == [
        ("optical", {"S2L1C": "/x/optical.tif", "S1GRD": "/x/radar.tif"})]
    assert match_scenes(["/x/radar_S1Hand.tif", "/x/optical.tif"], modalities(), RECORD) == [
        ("radar_S1Hand", {"S2L1C": "/x/optical.tif", "S1GRD": "/x/radar_S1Hand.tif"})]


@pytest.mark.parametrize("urls, named", [
    ([S1], ["no raster for S2L1C (a file ending _S2Hand.tif)", S1, "S1GRD (files ending _S1Hand.tif)"]),
    ([S1, S2, "/x/Spain_7370579_S2Hand.tif"], ["/x/Spain_7370579_S2Hand.tif", "both S2L1C rasters"]),
    (["/x/a.tif", "/x/b.tif", "/x/c.tif"], ["3 raster(s)", "/x/a.tif, /x/b.tif, /x/c.tif match none"]),
], ids=["missing-S2", "two-S2", "three-unmatched"])
def test_inputs_that_do_not_give_one_raster_per_modality_are_refused(urls, named):
    with pytest.raises(EngineError) as caught:
        match_scenes(urls, modalities(), RECORD)
    error = caught.value
    assert error.code == "modality_inputs" and "Tune mm-1 reads 2 modalities" in error.message
    for text in named:
        assert text in error.message, (text, error.message)
    assert "S2L1C, S1GRD" in error.hint


def _raster(path: Path, bands: int, origin: tuple[float, float] = (500000, 4000000), size: int = 8) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="float32",
                       crs="EPSG:32633", transform=from_origin(*origin, 10, 10)) as dst:
        dst.write(np.ones((bands, size, size), dtype="float32"))
    return str(path)


def test_a_scene_needs_one_grid_and_the_bands_the_model_reads(tmp_path: Path):
    s2 = _raster(tmp_path / "a_S2Hand.tif", 13)
    [warning] = check_scene({"S2L1C": s2, "S1GRD": _raster(tmp_path / "a_S1Hand.tif", 2)}, modalities(), RECORD)
    assert s2 in warning and "reads 3" in warning  # 13 unnamed bands, 3 read: a warning, not a refusal
    shifted = _raster(tmp_path / "b_S1Hand.tif", 2, origin=(500010, 4000000))
    with pytest.raises(EngineError) as caught:
        check_scene({"S2L1C": s2, "S1GRD": shifted}, modalities(), RECORD)
    assert caught.value.code == "modality_grid"
    assert s2 in caught.value.message and shifted in caught.value.message and "500010" in caught.value.message
    small = _raster(tmp_path / "c_S1Hand.tif", 2, size=6)
    with pytest.raises(EngineError) as caught:
        check_scene({"S2L1C": s2, "S1GRD": small}, modalities(), RECORD)
    assert caught.value.code == "modality_grid" and "6 x 6 px" in caught.value.message
    too_few = _raster(tmp_path / "d_S2Hand.tif", 2)
    with pytest.raises(EngineError) as caught:
        check_scene({"S2L1C": too_few, "S1GRD": _raster(tmp_path / "d_S1Hand.tif", 2)}, modalities(), RECORD)
    assert caught.value.code == "band_count" and too_few in caught.value.message
