"""A run over an area and several dates loads as one group: styles, legend entries, visibility and time."""

from __future__ import annotations

import pytest


@pytest.fixture()
def run_record(tmp_path, qgis_new_project):
    from run_fixture import make_run

    from qgis.core import QgsProject

    yield make_run(tmp_path / "run")
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()


def _legend(layer) -> list[tuple[int, str, str]]:
    return [(int(c.value), c.label, c.color.name()) for c in layer.renderer().classes()]


def test_a_run_of_two_dates_is_one_group_styled_and_time_enabled(run_record):
    from qgis.core import (QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject,
                           QgsSingleBandGrayRenderer)

    from geostudio_plugin import run_layers

    run = run_layers.load_run(run_record)
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup("GeoStudio: flood-resnet — Gulf of Honduras — 2024-09-12 to 2024-09-20 (2 dates)")
    assert group is not None and group is run.group
    assert [g.name() for g in group.children()] == ["2024-09-20", "2024-09-12"]  # latest on top
    day = run.dates[0]
    assert [n.name() for n in group.children()[1].children()] == [
        "Confidence, 2024-09-12", "Masked prediction, 2024-09-12", "Prediction, 2024-09-12", "Input RGB, 2024-09-12"]
    checked = {n.name(): n.itemVisibilityChecked() for n in group.children()[1].children()}
    assert checked == {"Confidence, 2024-09-12": False, "Masked prediction, 2024-09-12": True,
                       "Prediction, 2024-09-12": False, "Input RGB, 2024-09-12": True}

    assert isinstance(day.rgb.renderer(), QgsMultiBandColorRenderer)
    assert (day.rgb.renderer().redBand(), day.rgb.renderer().greenBand(), day.rgb.renderer().blueBand()) == (1, 2, 3)
    stretch = day.rgb.renderer().redContrastEnhancement()
    assert 0 <= stretch.minimumValue() < stretch.maximumValue() <= 255  # cumulative cut, not the type's range
    assert isinstance(day.prediction.renderer(), QgsPalettedRasterRenderer)
    assert _legend(day.prediction) == [(0, "Not water", "#d9d9d9"), (1, "Water", "#1f78b4")]
    assert day.prediction.renderer().rasterTransparency().alphaValue(0.0) == 0  # opacity 0: transparent on the map
    assert _legend(day.masked) == [(0, "Not water", "#d9d9d9"), (1, "Water", "#1f78b4"),
                                   (999, "Cloud (masked)", "#f0f0f0"), (998, "Snow or ice (masked)", "#66e0ff"),
                                   (997, "Permanent water (masked)", "#08306b")]
    legend_labels = [item[0] for item in day.masked.renderer().legendSymbologyItems()]
    assert {"Cloud (masked)", "Snow or ice (masked)", "Permanent water (masked)"} <= set(legend_labels)
    assert isinstance(day.confidence.renderer(), QgsSingleBandGrayRenderer)
    assert day.masked.dataProvider().sourceNoDataValue(1) == -9999
    assert day.prediction.dataProvider().sourceNoDataValue(1) == 255


def test_the_temporal_range_picks_one_date(run_record):
    from qgis.core import QgsDateTimeRange, QgsMapSettings, QgsProject
    from qgis.PyQt.QtCore import QDate, QDateTime, QTime

    from geostudio_plugin import run_layers

    run = run_layers.load_run(run_record)
    first, second = run.dates
    assert all(lyr.temporalProperties().isActive() for lyr in run.layers())
    noon = QDateTime(QDate(2024, 9, 20), QTime(12, 0))
    frame = QgsDateTimeRange(noon, noon.addSecs(3600))  # one navigation frame inside the second date
    settings = QgsMapSettings()
    settings.setLayers(run.layers())
    settings.setIsTemporal(True)
    settings.setTemporalRange(frame)
    drawn = run_layers.visible_at(settings.layers(), settings.temporalRange())
    assert {lyr.id() for lyr in drawn} == {lyr.id() for lyr in second.layers()}
    assert not any(lyr.temporalProperties().isVisibleInTemporalRange(frame) for lyr in first.layers())
    between = QDateTime(QDate(2024, 9, 15), QTime(0, 0))
    assert run_layers.visible_at(run.layers(), QgsDateTimeRange(between, between.addDays(1))) == []
    project_range = QgsProject.instance().timeSettings().temporalRange()
    assert project_range.begin() == QDateTime(QDate(2024, 9, 12), QTime(0, 0))
    assert project_range.end() == QDateTime(QDate(2024, 9, 21), QTime(0, 0))


def test_a_single_date_without_confidence_is_not_time_enabled(tmp_path, qgis_new_project):
    from run_fixture import make_run

    from qgis.core import QgsProject

    from geostudio_plugin import run_layers

    record = make_run(tmp_path / "one", dates=("2024-09-12",), confidence=False)
    del record["outputs"][0]["masked"]  # nothing masked: the plain prediction is shown
    run = run_layers.load_run(record)
    day, = run.dates
    assert day.confidence is None and day.masked is None
    assert [lyr.name() for lyr in day.layers()] == ["Prediction, 2024-09-12", "Input RGB, 2024-09-12"]
    tree = QgsProject.instance().layerTreeRoot()
    assert tree.findLayer(day.prediction.id()).itemVisibilityChecked()
    assert not any(lyr.temporalProperties().isActive() for lyr in run.layers()) and run.time_range is None
    QgsProject.instance().removeAllMapLayers()
    tree.removeAllChildren()
