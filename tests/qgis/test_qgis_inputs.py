"""qgis_inputs: QGIS objects -> the plain values of contract's builders. Pure unit tests (no engine)."""

from __future__ import annotations

import pytest
from conftest import SAMPLES

HOLDOUT = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"


def crs(code: str):
    from qgis.core import QgsCoordinateReferenceSystem

    return QgsCoordinateReferenceSystem(code)


def test_geographic_extent_is_returned_unchanged():
    from qgis.core import QgsRectangle

    from geostudio_plugin.qgis_inputs import bbox_4326

    assert bbox_4326(QgsRectangle(-88.19, 15.77, -88.15, 15.84), crs("EPSG:4326")) == [-88.19, 15.77, -88.15, 15.84]
    assert bbox_4326(QgsRectangle(-88.19, 15.77, -88.15, 15.84)) == [-88.19, 15.77, -88.15, 15.84]  # default CRS


def test_projected_extent_becomes_the_lon_lat_box_that_covers_it():
    from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject, QgsRectangle

    from geostudio_plugin.qgis_inputs import bbox_4326

    # UTM 33N, a 10 km square at 45 deg N on the zone's central meridian (15 deg E)
    utm = crs("EPSG:32633")
    minx, miny, maxx, maxy = bbox_4326(QgsRectangle(495000, 5000000, 505000, 5010000), utm)
    assert minx < 15.0 < maxx and abs((minx + maxx) / 2 - 15.0) < 1e-6  # symmetric about the central meridian
    assert 45.1 < miny < 45.2 < maxy < 45.3
    to_wgs84 = QgsCoordinateTransform(utm, crs("EPSG:4326"), QgsProject.instance())
    tolerance = 1e-6  # degrees, about 0.1 m: QGIS densifies each edge, it does not find the exact extremes
    for x in (495000, 500000, 505000):  # the square's corners and edge midpoints all lie in the box
        for y in (5000000, 5005000, 5010000):
            point = to_wgs84.transform(QgsPointXY(x, y))
            assert minx - tolerance <= point.x() <= maxx + tolerance, (x, y)
            assert miny - tolerance <= point.y() <= maxy + tolerance, (x, y)


def test_web_mercator_extent_crossing_nothing_special():
    from qgis.core import QgsRectangle

    from geostudio_plugin.qgis_inputs import bbox_4326

    box = bbox_4326(QgsRectangle(-20037508.34 / 2, 0, 0, 20037508.34 / 4), crs("EPSG:3857"))
    assert box[0] == pytest.approx(-90.0, abs=1e-6) and box[2] == pytest.approx(0.0, abs=1e-6)
    assert box[1] == pytest.approx(0.0, abs=1e-6) and box[3] == pytest.approx(40.979898, abs=1e-5)
    assert box[0] < box[2] and box[1] < box[3]  # never inverted (no antimeridian in the extent)


def test_referenced_rectangle_carries_its_crs():
    from qgis.core import QgsRectangle, QgsReferencedRectangle

    from geostudio_plugin.qgis_inputs import bbox_4326

    rect = QgsRectangle(495000, 5000000, 505000, 5010000)
    assert bbox_4326(QgsReferencedRectangle(rect, crs("EPSG:32633"))) == bbox_4326(rect, crs("EPSG:32633"))


def test_null_or_empty_extent_gives_no_bbox():
    from qgis.core import QgsRectangle

    from geostudio_plugin.qgis_inputs import bbox_4326

    assert bbox_4326(QgsRectangle()) is None
    assert bbox_4326(QgsRectangle(1, 1, 1, 1), crs("EPSG:4326")) is None


def test_layer_path_is_the_file_its_provider_names():
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from geostudio_plugin.qgis_inputs import layer_path

    layer = QgsRasterLayer(str(HOLDOUT), "holdout")
    assert layer.isValid()
    assert layer_path(layer) == str(HOLDOUT)
    assert layer_path(None) == ""
    assert layer_path(QgsRasterLayer("/vsizip//data/scenes.zip/x.tif", "zipped")) == "/vsizip//data/scenes.zip/x.tif"
    vector = QgsVectorLayer("/data/labels.gpkg|layername=water", "labels", "ogr")  # options are not the path
    assert layer_path(vector) == "/data/labels.gpkg"
