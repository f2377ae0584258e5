"""Processing "Run inference (area and dates)": what it asks for, and bad input refused before the engine runs,
each problem naming its parameter (the Inference dock's checks, inference_request's wording)."""

from __future__ import annotations

import datetime as _dt

import pytest
from fake_workspace import write_model

AREA = "13.14,13.22,11.79,11.88 [EPSG:4326]"


@pytest.fixture()
def one_model(plugin, tmp_path):
    """A workspace with one finished model, tune-1 (the MODEL list is read from it when the algorithm loads)."""
    from geostudio_plugin import settings

    before = settings.workspace()
    write_model(tmp_path, "tune-1")
    settings.set_workspace(str(tmp_path))
    yield tmp_path
    settings.set_workspace(str(before))


def test_the_provider_lists_the_algorithm_with_its_parameters(plugin):
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("geostudio:infer_area")
    assert algorithm is not None and algorithm.displayName() == "Run inference (area and dates)"
    assert [p.name() for p in algorithm.parameterDefinitions()] == [
        "MODEL", "EXTENT", "START_DATE", "END_DATE", "EVERY_DATE", "MAX_CLOUD", "CLOUD_MASK", "SNOW_MASK",
        "WATER_MASK", "LOAD", "PAYLOAD"]
    optional = {p.name() for p in algorithm.parameterDefinitions() if p.flags() & p.FlagOptional}
    assert optional == {"MODEL", "EXTENT", "START_DATE", "END_DATE", "PAYLOAD"}  # a payload may give the first three
    cloud = algorithm.parameterDefinition("MAX_CLOUD")
    assert (cloud.defaultValue(), cloud.minimum(), cloud.maximum()) == (80, 0, 100)
    assert [o.name() for o in algorithm.outputDefinitions()] == ["INFERENCE_JSON", "INFERENCE_FOLDER", "PREDICTIONS"]


FUTURE = (_dt.date.today() + _dt.timedelta(days=3)).isoformat()


@pytest.mark.parametrize("change, expected", [
    ({"START_DATE": FUTURE}, rf"Start date: {FUTURE} is in the future .*\(parameter START_DATE\)"),
    ({"END_DATE": "2024-09-01"}, r"End date: 2024-09-01 is before the start date 2024-09-10\. \(parameter END_DATE\)"),
    ({"END_DATE": FUTURE}, rf"End date: {FUTURE} is in the future .*\(parameter END_DATE\)"),
    ({"START_DATE": "10/09/2024"}, r"START_DATE: '10/09/2024' is not a date; give it as YYYY-MM-DD"),
    ({"EXTENT": "13.2,13.2,11.8,11.9 [EPSG:4326]"}, r"Area: the rectangle is empty .*\(parameter EXTENT\)"),
    ({"MODEL": ""}, r"Model: pick a tuned model first .*\(parameter MODEL\)"),
    ({"MODEL": "tune-2"},
     r"No tuned model 'tune-2' in the workspace .*\(parameter MODEL\)\. The workspace has: tune-1"),
    ({"START_DATE": ""}, r"Start date: give the first day, as YYYY-MM-DD\. \(parameter START_DATE\)"),
    ({"EXTENT": None}, r"Area: none yet\..*\(parameter EXTENT\)"),
    ({"PAYLOAD": '{"fine_tuning_id": "tune-1", '}, r"PAYLOAD: the payload is not valid JSON"),
    ({"PAYLOAD": "[1, 2]"}, r"PAYLOAD: the payload must be a JSON object"),
    ({"PAYLOAD": "/no/such/payload.json"}, r"PAYLOAD: '/no/such/payload.json' is neither JSON nor an existing file"),
    ({"PAYLOAD": '{"spatial_domain": {"bbox": [[0, 0, 1, 1]]}}'}, r"PAYLOAD: the payload names no model"),
])
def test_bad_input_names_its_parameter(one_model, qgis_processing, change, expected):
    import processing
    from qgis.core import QgsProcessingException

    parameters = {"MODEL": "tune-1", "EXTENT": AREA, "START_DATE": "2024-09-10", "END_DATE": "2024-09-14",
                  "LOAD": False, **change}
    with pytest.raises(QgsProcessingException, match=expected):
        processing.run("geostudio:infer_area", parameters)
