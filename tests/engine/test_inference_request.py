"""The Inference dock's area-and-dates request (geostudio_plugin/inference_request.py, standard library only) and
the engine's inference spec agree on the payload's fields: bbox, dates, maxcc, post_processing."""

from __future__ import annotations

import datetime as dt

import pytest

from geostudio_plugin.engine.inference.spec import InferSpec
from geostudio_plugin.inference_request import AreaRequest, bbox_problem, date_entry, date_problem, place_text


def test_the_payload_is_a_valid_area_inference_spec():
    request = AreaRequest("tune-1", (13.146418, 11.799808, 13.215874, 11.871586), ("2024-09-10_2024-09-14",),
                          maxcc=30, masks={"cloud_masking": True, "snow_ice_masking": False,
                                           "permanent_water_masking": True})
    assert request.problem() == ""
    payload = request.to_payload()
    spec = InferSpec.model_validate(payload)
    assert spec.is_area() and not spec.spatial_domain.urls
    assert spec.spatial_domain.bbox == [[13.146418, 11.799808, 13.215874, 11.871586]]
    assert spec.temporal_domain == ["2024-09-10_2024-09-14"] and spec.maxcc == 30
    assert spec.post_processing == {"cloud_masking": True, "snow_ice_masking": False, "permanent_water_masking": True}
    assert spec.temporal_each is False and "temporal_each" not in payload  # the Studio's payload, unchanged
    every = AreaRequest("tune-1", (13.1, 11.8, 13.2, 11.9), ("2024-09-10_2024-09-14",), every_date=True)
    assert InferSpec.model_validate(every.to_payload()).temporal_each is True
    assert every.availability_payload()["temporal_each"] is True


def test_the_place_is_the_area_centre_in_degrees():
    assert place_text((-88.19, 15.77, -88.15, 15.84)) == "15.805° N, 88.170° W"
    assert place_text((13.1, -11.9, 13.2, -11.8)) == "11.850° S, 13.150° E"


@pytest.mark.parametrize("start, end, said", [
    (dt.date(2024, 9, 14), dt.date(2024, 9, 10), "End date: 2024-09-10 is before the start date 2024-09-14."),
    (dt.date(2030, 1, 1), None, "Start date: 2030-01-01 is in the future (today is 2026-11-29)."),
    (dt.date(2026, 11, 1), dt.date(2026, 12, 1), "End date: 2026-12-01 is in the future (today is 2026-11-29)."),
    (dt.date(2024, 9, 10), dt.date(2024, 9, 10), ""),
])
def test_dates_are_checked_naming_the_field(start, end, said):
    assert date_problem(start, end, dt.date(2026, 11, 29)) == said


def test_entries_areas_and_other_fields():
    assert date_entry(dt.date(2024, 9, 10)) == "2024-09-10"
    assert date_entry(dt.date(2024, 9, 10), dt.date(2024, 9, 10)) == "2024-09-10"
    assert date_entry(dt.date(2024, 9, 10), dt.date(2024, 9, 14)) == "2024-09-10_2024-09-14"
    assert bbox_problem(None).startswith("Area: none yet")
    assert bbox_problem([13.2, 11.8, 13.2, 11.9]).startswith("Area: the rectangle is empty")
    assert "outside longitude/latitude" in bbox_problem([170, 0, 190, 10])
    base = dict(model="t", bbox_4326=(1.0, 1.0, 2.0, 2.0), dates=("2024-09-10",))
    assert AreaRequest(**{**base, "model": ""}).problem().startswith("Model: ")
    assert AreaRequest(**{**base, "maxcc": 120}).problem() == "Max cloud cover: 120 is not a percentage (0 to 100)."
    assert AreaRequest(**{**base, "masks": {"ocean_masking": True}}).problem().startswith(
        "Post-processing: unknown mask(s) ocean_masking")
    assert AreaRequest(**{**base, "dates": ()}).problem() == "Dates: give a start date."
