"""The ``geostudio`` Processing provider as a whole: every algorithm listed in its group with its help, the lists
read from the workspace (and refreshed when it changes), Processing's own refusals before the engine starts (no
engine, an unknown model, a bad Studio payload), and the Studio payload rule."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, SAMPLES
from fake_workspace import write_dataset, write_model

GROUPS = {
    "geostudio:list_collections": "Data", "geostudio:check_availability": "Data", "geostudio:fetch_imagery": "Data",
    "geostudio:prescan_dataset": "Datasets", "geostudio:onboard_dataset": "Datasets",
    "geostudio:tune_model": "Fine-tuning", "geostudio:export_model": "Fine-tuning",
    "geostudio:infer_area": "Inference", "geostudio:infer_raster": "Inference",
}


@pytest.fixture()
def fake_workspace(plugin, tmp_path):
    """A workspace of hand-written records (two models, one dataset), set as the user's; set back after."""
    from geostudio_plugin import settings, workspace_index

    before = settings.workspace()
    write_model(tmp_path, "water-older", created="2026-11-28T10:00:00")
    write_model(tmp_path, "water-newer", created="2026-11-29T10:00:00")
    write_dataset(tmp_path, "ds-1")
    settings.set_workspace(str(tmp_path))
    workspace_index.changed()
    yield tmp_path
    settings.set_workspace(str(before))
    workspace_index.changed()


def _algorithm(algorithm_id: str):  # noqa: ANN202 - the provider's own instance (what the toolbox lists)
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(algorithm_id)


def test_every_algorithm_is_listed_in_its_group_with_help_and_an_example(plugin):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("geostudio")
    assert provider is plugin.provider and not provider.icon().isNull()
    listed = {a.id(): a for a in provider.algorithms()}
    assert set(GROUPS) <= set(listed)
    for algorithm_id, group in GROUPS.items():
        algorithm = listed[algorithm_id]
        assert algorithm.group() == group, algorithm_id
        assert algorithm.groupId() == {"Data": "data", "Datasets": "datasets", "Fine-tuning": "finetuning",
                                       "Inference": "inference"}[group]
        text = algorithm.shortHelpString()
        assert "<h3>Inputs</h3>" in text and "<h3>Outputs</h3>" in text and "<h3>Example</h3>" in text, algorithm_id
        assert f"qgis_process.bin run {algorithm_id} -- " in text
        assert algorithm.helpUrl().endswith("#processing")
        parameters = {p.name() for p in algorithm.parameterDefinitions()}
        outputs = {o.name() for o in algorithm.outputDefinitions()}
        for name in re.findall(r"<li><b>([^<]+)</b>", text):  # every name the help lists is a real one
            assert set(name.split(", ")) <= parameters | outputs, (algorithm_id, name)
        example = re.search(r"<code>qgis_process\.bin run \S+ -- (.*)</code>", text).group(1)
        arguments = re.findall(r"(?:^| |')([A-Z_]+)=", example)
        assert arguments and set(arguments) <= parameters, (algorithm_id, example)  # so is every one it sets


def test_the_model_dataset_and_template_lists_are_read_from_the_workspace(fake_workspace):
    infer = _algorithm("geostudio:infer_raster").parameterDefinition("MODEL")
    assert infer.usesStaticStrings() and infer.options() == ["water-newer", "water-older"]  # newest first
    assert infer.defaultValue() == "water-newer"
    assert _algorithm("geostudio:export_model").parameterDefinition("MODEL").options() == infer.options()
    assert _algorithm("geostudio:infer_area").parameterDefinition("MODEL").options() == infer.options()
    tune = _algorithm("geostudio:tune_model")
    assert tune.parameterDefinition("DATASET").options() == ["ds-1"]
    templates = tune.parameterDefinition("TEMPLATE")
    assert {"timm_resnet_seg", "prithvi_seg", "prithvi_reg"} <= set(templates.options())
    assert templates.defaultValue() == "timm_resnet_seg"


def test_a_newly_finished_model_appears_after_the_one_refresh_call(fake_workspace):
    from geostudio_plugin import workspace_index

    write_model(fake_workspace, "water-newest", created="2026-11-29T11:00:00")
    assert "water-newest" not in _algorithm("geostudio:infer_raster").parameterDefinition("MODEL").options()
    workspace_index.changed()
    assert _algorithm("geostudio:infer_raster").parameterDefinition("MODEL").options()[0] == "water-newest"


@pytest.mark.parametrize("algorithm_id, parameters", [
    ("geostudio:export_model", {"MODEL": "nope"}),
    ("geostudio:infer_raster", {"INPUT": str(SAMPLES / "holdout" / "USA_905409_S1Hand.tif"), "MODEL": "nope"}),
])
def test_an_unknown_model_is_refused_before_the_engine_naming_the_known_ones(fake_workspace, qgis_processing,
                                                                              tmp_path, algorithm_id, parameters):
    import processing
    from qgis.core import QgsProcessingException

    output = tmp_path / "out.zip"
    with pytest.raises(QgsProcessingException, match=r"No tuned model 'nope' in the workspace .*\(parameter MODEL\)"
                                                     r"\. The workspace has: water-newer, water-older"):
        processing.run(algorithm_id, {**parameters, "OUTPUT": str(output)})
    assert not output.exists()


@pytest.mark.parametrize("algorithm_id, parameters", [
    ("geostudio:tune_model", {"DATASET": "ds-1"}),
    ("geostudio:onboard_dataset", {}),
    ("geostudio:infer_area", {"MODEL": "water-newer", "LOAD": False}),
])
@pytest.mark.parametrize("payload, expected", [
    ('{"name": "x", ', r"PAYLOAD: the payload is not valid JSON \(Expecting"),
    ('["a", "list"]', r"PAYLOAD: the payload must be a JSON object \(\{\.\.\.\}\), not a list"),
    ("payload.json", r"PAYLOAD: 'payload.json' is neither JSON nor an existing file"),
])
def test_a_bad_studio_payload_is_refused_naming_the_parameter(fake_workspace, qgis_processing, algorithm_id,
                                                             parameters, payload, expected):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=expected):
        processing.run(algorithm_id, {**parameters, "PAYLOAD": payload})


def _context():  # noqa: ANN202
    from qgis.core import QgsProcessingContext, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    return context


def test_a_studio_payload_wins_over_the_other_parameters(fake_workspace, tmp_path):
    """One rule (contract.with_studio_payload) on the three algorithms that take a payload: its fields win, the
    form's are not used; the settings fill what it does not name; only the documented overrides apply over it."""
    from geostudio_plugin import credentials, settings
    from geostudio_plugin.processing.infer_area import InferAreaAlgorithm
    from geostudio_plugin.processing.onboard_dataset import OnboardDatasetAlgorithm
    from geostudio_plugin.processing.tune_model import TuneModelAlgorithm

    tune = {"name": "studio-tune", "dataset_id": "ds-1", "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "model_parameters": {"runner": {"max_epochs": 2}}}
    algorithm = TuneModelAlgorithm().create()
    spec = algorithm.build_spec({"PAYLOAD": json.dumps(tune), "NAME": "form-name", "EPOCHS": 9, "DEVICE": 1},
                                _context())
    assert spec == {**tune, "device": "cpu"}  # DEVICE fills the device the payload does not name
    spec = algorithm.build_spec({"PAYLOAD": json.dumps({**tune, "device": "mps"}), "DEVICE": 1, "DRY_RUN": True},
                                _context())
    assert spec["device"] == "mps" and spec["train_options"] == {"dry_run": True}

    path = tmp_path / "onboard.json"
    onboarding = json.loads((REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    path.write_text(json.dumps(onboarding))
    algorithm = OnboardDatasetAlgorithm().create()
    built = algorithm.build_payload({"PAYLOAD": str(path), "NAME": "form name", "LABEL_SUFFIX": "_x.tif"}, _context())
    assert built["dataset_name"] == onboarding["dataset_name"] and built["label_suffix"] == "_LabelHand.tif"
    assert built["dataset_url"] == onboarding["dataset_url"]
    built = algorithm.build_payload({"PAYLOAD": json.dumps(onboarding), "SOURCE": str(SAMPLES / "train")},
                                    _context())
    assert built["dataset_url"] == str(SAMPLES / "train")  # SOURCE: the one documented override

    inference = {"fine_tuning_id": "water-older", "spatial_domain": {"bbox": [[-88.19, 15.77, -88.15, 15.84]]},
                 "temporal_domain": ["2024-09-12"], "maxcc": 30, "endpoints": {"sentinel_aws": "https://payload/"}}
    credentials.set_endpoint("sentinel_aws", "https://settings.example/stac")
    settings.set_device("cpu")
    try:
        spec = InferAreaAlgorithm().create().build_payload(
            {"PAYLOAD": json.dumps(inference), "MODEL": "water-newer", "START_DATE": "2020-01-01", "MAX_CLOUD": 90},
            _context())
    finally:
        credentials.set_endpoint("sentinel_aws", "")
        settings.set_device("auto")
    assert spec == {**inference, "device": "cpu", "endpoints": {"sentinel_aws": "https://settings.example/stac"}}


@pytest.mark.parametrize("case", ["override points nowhere", "nothing set up"])
def test_without_an_engine_the_algorithms_stay_listed_and_say_how_to_set_it_up(plugin, qgis_processing, tmp_path,
                                                                               monkeypatch, case):
    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    from geostudio_plugin import settings

    if case == "override points nowhere":
        settings.set_engine_python_override(str(tmp_path / "no-engine" / "bin" / "python"))
        expected = r"The GeoStudio engine Python set in GeoStudio > Settings \(.*no-engine/bin/python\) does not exist"
    else:
        settings.set_engine_python_override("")
        monkeypatch.setenv("GEOSTUDIO_ENGINES_DIR", str(tmp_path / "engines"))  # no managed engine there
        expected = r"The GeoStudio engine is not set up yet\. Open GeoStudio > Settings and click 'Set up engine'"
    QgsApplication.processingRegistry().providerById("geostudio").refreshAlgorithms()
    assert set(GROUPS) <= {a.id() for a in QgsApplication.processingRegistry().providerById("geostudio").algorithms()}
    report = tmp_path / "report.json"
    with pytest.raises(QgsProcessingException) as raised:
        processing.run("geostudio:prescan_dataset", {
            "SOURCE": str(SAMPLES / "train"), "LABEL_SUFFIX": "_LabelHand.tif", "DATA_SUFFIXES": "_S1Hand.tif",
            "REPORT": str(report), "TABLE": "TEMPORARY_OUTPUT"})
    message = str(raised.value)
    assert re.search(expected, message), message
    # not the QGIS desktop (a script here, qgis_process on a server): the command that builds the engine
    assert "python3 -m geostudio_plugin.engine_runtime ensure" in message and "make engine" in message
    assert not report.exists()
