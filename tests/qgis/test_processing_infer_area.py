"""Processing "Run inference (area and dates)": what it asks for, and bad input refused before the engine runs,
each problem naming its parameter (the Inference dock's checks, inference_request's wording)."""

from __future__ import annotations

import datetime as _dt

import pytest

AREA = "13.14,13.22,11.79,11.88 [EPSG:4326]"


def test_the_provider_lists_the_algorithm_with_its_parameters(plugin):
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById("geostudio:infer_area")
    assert algorithm is not None and algorithm.displayName() == "Run inference (area and dates)"
    assert [p.name() for p in algorithm.parameterDefinitions()] == [
        "MODEL", "EXTENT", "START_DATE", "END_DATE", "EVERY_DATE", "MAX_CLOUD", "CLOUD_MASK", "SNOW_MASK",
        "WATER_MASK", "LOAD"]
    optional = {p.name() for p in algorithm.parameterDefinitions() if p.flags() & p.FlagOptional}
    assert optional == {"END_DATE"}
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
    ({"MODEL": " "}, r"Model: pick a tuned model first .*\(parameter MODEL\)"),
])
def test_bad_input_names_its_parameter(plugin, qgis_processing, change, expected):
    import processing
    from qgis.core import QgsProcessingException

    parameters = {"MODEL": "tune-1", "EXTENT": AREA, "START_DATE": "2024-09-10", "END_DATE": "2024-09-14",
                  "LOAD": False, **change}
    with pytest.raises(QgsProcessingException, match=expected):
        processing.run("geostudio:infer_area", parameters)
