"""A run's map exported as PNG and PDF: the right size, not blank, the prediction's colour on it."""

from __future__ import annotations

import pytest


@pytest.fixture()
def loaded_run(tmp_path, qgis_new_project):
    from run_fixture import make_run

    from qgis.core import QgsProject

    from geostudio_plugin import run_layers

    yield run_layers.load_run(make_run(tmp_path / "run"))
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()


def test_the_map_of_a_run_exports_to_png_and_pdf(loaded_run, tmp_path):
    from run_fixture import WATER

    from qgis.core import QgsLayoutItemLegend, QgsLayoutItemMap, QgsLayoutItemPicture, QgsLayoutItemScaleBar
    from qgis.PyQt.QtGui import QColor, QImage

    from geostudio_plugin import map_export

    content = map_export.map_content(loaded_run, "2024-09-12")
    assert [lyr.name() for lyr in content.layers] == ["Masked prediction, 2024-09-12", "Input RGB, 2024-09-12"]
    assert content.title == "flood-resnet — Gulf of Honduras — 2024-09-12"
    assert content.subtitle == "Date 1 of 2 (2024-09-12 to 2024-09-20)"
    layout = map_export.build_layout(content)
    kinds = {type(item).__name__ for item in layout.items()}
    assert {"QgsLayoutItemMap", "QgsLayoutItemLegend", "QgsLayoutItemScaleBar", "QgsLayoutItemPicture",
            "QgsLayoutItemLabel"} <= kinds
    legend = next(i for i in layout.items() if isinstance(i, QgsLayoutItemLegend))
    assert [n.name() for n in legend.model().rootGroup().children()] == ["Masked prediction, 2024-09-12"]
    picture = next(i for i in layout.items() if isinstance(i, QgsLayoutItemPicture))
    assert picture.picturePath() == map_export.NORTH_ARROW_SVG
    scale = next(i for i in layout.items() if isinstance(i, QgsLayoutItemScaleBar))
    assert scale.linkedMap() is not None and scale.linkedMap().crs().authid() == "EPSG:32616"  # metres
    mapped = next(i for i in layout.items() if isinstance(i, QgsLayoutItemMap))
    assert mapped.isTemporal() and mapped.temporalRange().begin().date().toString("yyyy-MM-dd") == "2024-09-12"

    png, pdf = map_export.export_map(content, tmp_path / "out" / "map.png", tmp_path / "out" / "map.pdf", dpi=60)
    image = QImage(str(png))
    assert (image.width(), image.height()) == (int(297 / 25.4 * 60), int(210 / 25.4 * 60))  # as QGIS rounds: down
    px = 60 / 25.4  # pixels per mm
    x0, y0, width, height = map_export.MAP_RECT  # the map frame: the legend's swatches are outside it
    inside = [image.pixel(int((x0 + width * i / 40) * px), int((y0 + height * j / 40) * px))
              for i in range(2, 39) for j in range(2, 39)]
    assert len(set(inside)) > 50  # imagery under the prediction: not a blank map
    assert inside.count(QColor(WATER).rgb()) > 200  # the prediction's water, in its class colour, on a good part
    assert inside.count(QColor("#f0f0f0").rgb()) > 5  # the masked cloud corner
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["map.pdf", "map.png"]  # no temporary left


def test_the_other_date_shows_its_own_layers(loaded_run, tmp_path):
    from geostudio_plugin import map_export

    content = map_export.map_content(loaded_run)  # the latest date by default
    assert [lyr.name() for lyr in content.layers] == ["Masked prediction, 2024-09-20", "Input RGB, 2024-09-20"]
    assert content.time_range.begin().date().toString("yyyy-MM-dd") == "2024-09-20"
    with pytest.raises(ValueError, match="Nothing to put on the map"):
        map_export.build_layout(map_export.MapContent("empty", [], []))
