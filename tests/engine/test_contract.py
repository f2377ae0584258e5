"""The QGIS side's spec builders (geostudio_plugin/contract.py) against the engine's own spec models.

Runs in the engine environment (pydantic, no QGIS): every builder's output is validated by the model the
engine's command registry names for that command, so the two sides cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from geostudio_plugin import contract
from geostudio_plugin.engine import device as engine_device
from geostudio_plugin.engine import wire
from geostudio_plugin.engine.commands import COMMANDS

from conftest import DEMO_ONBOARD, HOLDOUT_IMAGE, TRAIN_DIR

BBOX = [-88.19, 15.77, -88.15, 15.84]


def validate(command: str, spec: dict[str, Any]) -> Any:
    model = COMMANDS[command].spec_model()
    assert model is not None, f"{command} has no spec model"
    return model.model_validate(spec)


def onboarding_form() -> dict[str, Any]:
    import json

    payload = json.loads(DEMO_ONBOARD.read_text())
    payload["dataset_url"] = str(TRAIN_DIR)
    return payload


def built_specs() -> dict[str, list[dict[str, Any]]]:
    """Representative output of every builder, by the command it feeds."""
    form = onboarding_form()
    labels_only = {**form, "data_sources": [{**form["data_sources"][0], "connector": "sentinel_aws",
                                             "collection": "sentinel-2-l2a"}],
                   "onboarding_options": {"from_labels": True, "endpoint": "https://payload.example/stac",
                                          "endpoints": {"IBMResearchSTAC": "https://payload.example/ibm"}}}
    return {
        "catalog": [contract.catalog_spec({}, {"sentinelhub": False}),
                    contract.catalog_spec({"IBMResearchSTAC": "https://example.org/stac"}, {"sentinelhub": True},
                                          check_access=False)],
        "search": [contract.search_spec("sentinel_aws", "sentinel-2-l2a", BBOX, "2018-08-01", "2018-09-30"),
                   contract.search_spec("sentinelhub", "s2_l2a", tuple(BBOX), "2018-08-01", "2018-08-01", maxcc=20,
                                        endpoint="https://example.org/stac")],
        "fetch": [contract.fetch_spec("sentinel_aws", "sentinel-2-l2a", BBOX, ["2018-09-14"]),
                  contract.fetch_spec("sentinel_aws", "sentinel-2-l2a", BBOX, ["2018-08-30", "2018-09-14"],
                                      bands=["red", "nir"], maxcc=30, endpoint="http://127.0.0.1:8000/stac")],
        "check": [contract.check_spec("sentinel_aws"), contract.check_spec("sentinel_aws", "https://example.org")],
        "prescan": [contract.prescan_spec(str(TRAIN_DIR), "_LabelHand.tif", ["_S1Hand.tif"])],
        "weights": [contract.weights_spec("timm_resnet18"), contract.weights_spec("Prithvi_EO_V2_tiny_TL")],
        "onboard": [contract.onboard_payload(form, {}),
                    contract.onboard_payload(labels_only, {"sentinel_aws": "https://settings.example/stac"})],
        "tune": [contract.tune_spec("my-tune", "ds-1", "timm_resnet18", "timm_resnet_seg", epochs=1, batch_size=4,
                                    lr=1e-3),
                 contract.tune_spec("dock tune", "ds-1", "timm_resnet18", "timm_resnet_seg", epochs=3, batch_size=8,
                                    lr=1e-4, crop_size=64, device="cuda:1",
                                    model_parameters={"model": {"decode_head": {"channels": 32}},
                                                      "data": {"workers_per_gpu": 0}})],
        "infer": [contract.infer_spec(str(HOLDOUT_IMAGE), None, "tune-1"),
                  contract.infer_spec(str(HOLDOUT_IMAGE), [-94.93, 38.70, -94.90, 38.72], "tune-1", "mps",
                                      description="holdout", output_path="/tmp/prediction.tif", confidence=False),
                  contract.infer_area_spec("tune-1", BBOX, ["2018-09-14", "2018-08-01_2018-08-31"]),
                       contract.infer_area_spec("tune-1", BBOX, ["2018-09-14"], maxcc=30, device="cpu",
                                                post_processing={"cloud_masking": True, "snow_ice_masking": False},
                                                endpoints={"sentinel_aws": "http://127.0.0.1:8000/"},
                                                max_area_sq_km=50),
                  contract.infer_area_spec("tune-1", BBOX, ["2018-08-01_2018-09-30"], temporal_each=True)],
        "check-availability": [contract.availability_spec("tune-1", BBOX, ["2018-09-14"]),
                               contract.availability_spec("tune-1", BBOX, ["2018-08-01_2018-09-30"], maxcc=20,
                                                          endpoints={"sentinel_aws": "http://127.0.0.1:8000/"}),
                               contract.availability_spec("tune-1", BBOX, ["2018-08-01_2018-09-30"],
                                                          temporal_each=True)],
        "delete": [contract.delete_spec(kind, "item-1") for kind in wire.KINDS],
        "template-import": [contract.template_import_spec("my template", "ds-1", path="/tmp/t.yaml.j2"),
                            contract.template_import_spec("inline", "ds-1", content="model: {}\n", purpose="Other",
                                                          schema={"type": "object", "properties": {}},
                                                          backbone="timm_resnet18", description="typed in"),
                            contract.template_import_spec("from export", "ds-1", path="/tmp/t.json",
                                                          schema="/tmp/schema.json")],
        "template-export": [contract.template_export_spec("my-template-1a2b3c", "/tmp/t.json"),
                            contract.template_export_spec("timm_resnet : Segmentation", "/tmp/t.zip")],
        "export-model": [contract.export_model_spec("tune-1"), contract.export_model_spec("tune-1", "/tmp/m.zip")],
        "import-model": [contract.import_model_spec("/tmp/m.zip"), contract.import_model_spec("file:///tmp/m.zip", "x"),
                         contract.import_studio_model_spec("/tmp/config_deploy.yaml", "/tmp/best.ckpt", "studio-1",
                                                           "from the Studio")],
    }


def test_every_command_the_qgis_side_runs_is_in_the_registry():
    assert set(contract.COMMANDS) <= set(COMMANDS)
    assert set(built_specs()) == {c for c in contract.COMMANDS if COMMANDS[c].spec is not None}


@pytest.mark.parametrize("command", sorted(built_specs()))
def test_builder_output_validates_against_the_engine_model(command):
    for spec in built_specs()[command]:
        validate(command, spec)


def test_builders_carry_their_values_through_validation():
    specs = built_specs()
    search = validate("search", specs["search"][1])
    assert (search.bbox, str(search.date_start), search.maxcc, search.endpoint) == (
        BBOX, "2018-08-01", 20, "https://example.org/stac")
    fetch = validate("fetch", specs["fetch"][1])
    assert [str(d) for d in fetch.dates] == ["2018-08-30", "2018-09-14"] and fetch.bands == ["red", "nir"]
    tune = validate("tune", specs["tune"][1])
    assert tune.name == "dock-tune" and tune.device == "cuda:1"
    assert tune.model_parameters == {"model": {"decode_head": {"channels": 32}},
                                     "data": {"workers_per_gpu": 0, "batch_size": 8, "crop_size": 64},
                                     "runner": {"max_epochs": 3}, "optimizer": {"lr": 1e-4}}
    assert validate("tune", specs["tune"][0]).device == "auto"
    infer = validate("infer", specs["infer"][1])
    assert infer.spatial_domain.bbox == [[-94.93, 38.70, -94.90, 38.72]] and infer.device == "mps"
    assert infer.spatial_domain.urls == [str(HOLDOUT_IMAGE)] and infer.output_path == "/tmp/prediction.tif"
    assert validate("infer", specs["infer"][0]).spatial_domain.bbox == []
    area = validate("infer", specs["infer"][3])
    assert area.is_area() and area.spatial_domain.bbox == [BBOX] and area.temporal_domain == ["2018-09-14"]
    assert (area.maxcc, area.device, area.max_area_sq_km, area.masks()) == (30, "cpu", 50, ["cloud"])
    assert area.endpoints == {"sentinel_aws": "http://127.0.0.1:8000/"}
    assert validate("infer", specs["infer"][2]).maxcc == 100  # the Studio API's default
    availability = validate("check-availability", specs["check-availability"][1])
    assert (availability.fine_tuning_id, availability.maxcc, availability.temporal_domain) == (
        "tune-1", 20, ["2018-08-01_2018-09-30"])
    assert validate("check-availability", specs["check-availability"][0]).maxcc == 80  # the Studio UI's default
    catalog = validate("catalog", specs["catalog"][1])
    assert catalog.discover and not catalog.check_access and catalog.credentials_configured == {"sentinelhub": True}


def test_onboarding_endpoints_follow_the_one_precedence_rule():
    """The user's Connectors setting wins; a payload's own endpoint applies where the user set none."""
    spec = validate("onboard", built_specs()["onboard"][1])
    options = spec.onboarding_options
    assert options.endpoints == {"sentinel_aws": "https://settings.example/stac",
                                 "IBMResearchSTAC": "https://payload.example/ibm"}
    assert options.endpoint is None  # the older single endpoint was folded into endpoints by the rule
    assert options.endpoint_for("sentinel_aws", "sentinel_aws") == "https://settings.example/stac"
    without_setting = validate("onboard", contract.onboard_payload(
        {**onboarding_form(), "data_sources": [{**onboarding_form()["data_sources"][0], "connector": "sentinel_aws"}],
         "onboarding_options": {"endpoint": "https://payload.example/stac"}}, {"sentinelhub": "https://other"}))
    assert without_setting.onboarding_options.endpoints == {"sentinel_aws": "https://payload.example/stac"}


def test_resolve_endpoints_rule():
    assert contract.resolve_endpoints(["a", "b"], {"a": "user-a", "c": "user-c"}, {"a": "own-a", "b": "own-b"}) == \
        {"a": "user-a", "b": "own-b"}  # c: no source uses it
    assert contract.resolve_endpoints([], {"a": "user-a"}, {"a": "own-a"}) == {"a": "own-a"}
    assert contract.payload_endpoints({"endpoint": "e", "endpoints": {"b": "x"}}, "a") == {"a": "e", "b": "x"}
    assert contract.payload_endpoints({"endpoint": "e", "endpoints": {"a": "x"}}, "a") == {"a": "x"}


def test_one_device_vocabulary_on_both_sides():
    assert contract.DEVICE_PATTERN.pattern == engine_device.PATTERN
    for value in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", " CUDA ", "gpu"):
        assert contract.normalise_device(value) == str(engine_device.parse_device(value))
    for value in ("tpu", "cuda:", "cuda:x", "gpu:1"):
        with pytest.raises(ValueError):
            contract.normalise_device(value)
        with pytest.raises(Exception):
            engine_device.parse_device(value)


def test_wire_names_are_the_contracts():
    assert contract.EVENT_PROGRESS == "progress" and contract.RECORDS == wire.RECORDS
    assert contract.is_progress({"event": "progress", "fraction": 0.5})
    assert not contract.is_progress({"event": "log"}) and not contract.is_progress({})
    assert contract.is_metric({"event": wire.EVENT_METRIC}) and contract.is_error({"event": wire.EVENT_ERROR})


def test_failure_from_an_error_event():
    failure = contract.EngineFailure.from_error_event(
        {"event": "error", "code": "invalid_spec", "message": "The onboarding spec has 1 problem",
         "hint": "Fix the named fields.", "details": [{"field": "label_suffix", "message": "equals"}, "plain"]},
        exit_code=wire.EXIT_INVALID_SPEC, log_path="/tmp/x.log")
    assert failure.text == "The onboarding spec has 1 problem Fix the named fields."
    assert failure.details == "label_suffix: equals\nplain" and failure.code == "invalid_spec"
    assert failure.exit_code == 3 and not failure.cancelled


def test_dataset_sample_paths_come_from_the_records_own_suffixes(tmp_path):
    record = {"modalities": ["S1GRD"], "label_suffix": "_LabelHand.tif",
              "data_sources": [{"modality_tag": "S1GRD", "file_suffix": "_S1Hand.tif"}],
              "training_params": {"S1GRD": {"train_data_dir": "training_data/S1GRD", "train_labels_dir": "labels",
                                            "file_suffix": "*_S1Hand.tif"}, "label_suffix": "*_LabelHand.tif"}}
    image, label = contract.dataset_sample_paths(record, tmp_path, "Bolivia_1")
    assert image == tmp_path / "training_data" / "S1GRD" / "Bolivia_1_S1Hand.tif"
    assert label == tmp_path / "labels" / "Bolivia_1_LabelHand.tif"


def test_contract_imports_only_the_standard_library_and_wire():
    import ast
    import sys

    source = Path(contract.__file__).read_text(encoding="utf-8")
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    package = {n for n in names if n.startswith(".")}
    assert package == {".engine.wire"}
    assert {n.split(".")[0] for n in names - package} <= set(sys.stdlib_module_names) | {"__future__"}
    assert not re.search(r"^\s*(import|from)\s+(qgis|pydantic)", source, re.M)


def test_a_studio_payload_given_as_is_becomes_the_engine_spec_by_one_rule(tmp_path):
    """Processing's PAYLOAD parameter: JSON text or a .json file, read by contract.studio_payload; the payload's
    fields win, defaults fill only what it does not name, the named overrides apply over it when given."""
    import json

    tune = {"name": "studio tune", "dataset_id": "ds-1", "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "model_parameters": {"runner": {"max_epochs": 2}}}
    spec = contract.with_studio_payload(contract.studio_payload(json.dumps(tune)), defaults={"device": "cpu",
                                                                                             "name": "not used"})
    assert validate("tune", spec).device == "cpu" and spec["name"] == "studio tune"
    path = tmp_path / "onboard.json"
    path.write_text(DEMO_ONBOARD.read_text())
    form = contract.with_studio_payload(contract.studio_payload(f"  {path}\n"),
                                        overrides={"dataset_url": str(TRAIN_DIR)})
    assert validate("onboard", contract.onboard_payload(form, {})).dataset_url == str(TRAIN_DIR)
    assert contract.with_studio_payload({"dataset_url": "a"}, overrides={"dataset_url": ""}) == {"dataset_url": "a"}
    infer = {"fine_tuning_id": "tune-1", "spatial_domain": {"bbox": [BBOX]}, "temporal_domain": ["2018-09-14"]}
    validate("infer", contract.with_studio_payload(infer, defaults={"device": "auto", "endpoints": {}}))
    assert contract.studio_payload("") is None and contract.studio_payload("  ") is None
    for text, expected in (("[1]", "must be a JSON object"), ('{"a": ', "is not valid JSON"),
                           ("no/such.json", "neither JSON nor an existing file")):
        with pytest.raises(ValueError, match=re.escape(expected)):
            contract.studio_payload(text)
