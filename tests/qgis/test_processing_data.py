"""Processing's Data group: "List connectors and collections" and "Check data availability" through processing.run
against the loopback STAC server (tests/support/local_stac.py, the bundled MARIDA patches), the endpoint set as
the Connectors dock sets it; the area given in Web Mercator, so the one extent -> EPSG:4326 rule is on the path.
What each Data algorithm asks for, and bad input refused before the engine starts. "Fetch imagery" runs through
processing.run in the graphical model (test_processing_model.py) and through qgis_process
(test_processing_qgis_process.py), both checked against the server's pixels with assert_server_pixels below."""

from __future__ import annotations

import pytest

BOTH = (-88.19, 15.77, -88.15, 15.84)  # two 16PCC patches, seen on 2018-08-30 and on 2018-09-14 (stac_data.py)
DAYS = ("2018-08-30", "2018-09-14")
DATA_ALGORITHMS = {"geostudio:list_collections": "List connectors and collections",
                   "geostudio:check_availability": "Check data availability",
                   "geostudio:fetch_imagery": "Fetch imagery"}


def mercator(box):
    """The box as a Web Mercator QgsReferencedRectangle (its bounding box, transformed)."""
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle,
                           QgsReferencedRectangle)

    wgs84, web = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857")
    to_web = QgsCoordinateTransform(wgs84, web, QgsProject.instance())
    return QgsReferencedRectangle(to_web.transformBoundingBox(QgsRectangle(*box)), web)


@pytest.fixture()
def data_settings(plugin, qgis_processing, marida_stac):
    """The loopback catalogue as the user's endpoint for Sentinel AWS and IBM Research STAC; set back after."""
    from geostudio_plugin import credentials

    for connector in ("sentinel_aws", "IBMResearchSTAC"):
        credentials.set_endpoint(connector, marida_stac.stac_url)
    yield marida_stac
    for connector in ("sentinel_aws", "IBMResearchSTAC"):
        credentials.set_endpoint(connector, "")


def features(path) -> list[dict]:
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(str(path), "out", "ogr")
    assert layer.isValid(), path
    names = layer.fields().names()
    return [{**dict(zip(names, f.attributes())), "_geometry": f.geometry()} for f in layer.getFeatures()]


# ------------------------------------------------------------------------------- parameters (no engine)
def test_the_data_group_lists_its_algorithms_with_their_parameters(plugin, qgis_processing):
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    for algorithm_id, title in DATA_ALGORITHMS.items():
        algorithm = registry.algorithmById(algorithm_id)
        assert algorithm is not None and algorithm.displayName() == title
        assert (algorithm.group(), algorithm.groupId()) == ("Data", "data")
        assert "qgis_process.bin run " + algorithm_id in algorithm.shortHelpString()
    check = registry.algorithmById("geostudio:check_availability")
    assert [p.name() for p in check.parameterDefinitions()] == [
        "CONNECTOR", "COLLECTION", "EXTENT", "START_DATE", "END_DATE", "MAX_CLOUD", "FOOTPRINTS", "DATES"]
    connector = check.parameterDefinition("CONNECTOR")
    assert connector.usesStaticStrings() and connector.defaultValue() == "sentinel_aws"
    assert {"sentinelhub", "nasa_earthdata", "sentinel_aws", "IBMResearchSTAC"} <= set(connector.options())
    assert check.parameterDefinition("START_DATE").type() == "datetime"
    fetch = registry.algorithmById("geostudio:fetch_imagery")
    assert [p.name() for p in fetch.destinationParameterDefinitions()] == ["OUTPUT"]
    assert fetch.parameterDefinition("OUTPUT").type() == "folderDestination"
    assert [o.name() for o in fetch.outputDefinitions()] == ["OUTPUT", "OUTPUT_RASTER", "RASTERS", "DATE_LIST"]
    assert fetch.outputDefinition("OUTPUT_RASTER").type() == "outputRaster"


@pytest.mark.parametrize("algorithm_id", ["geostudio:check_availability", "geostudio:fetch_imagery"])
@pytest.mark.parametrize("change, expected", [
    ({"END_DATE": "2018-08-01"}, r"End date: 2018-08-01 is before the start date 2018-09-14\. \(parameter END_DATE\)"),
    ({"COLLECTION": " "}, r"Collection: name one of the sentinel_aws collections .*\(parameter COLLECTION\)"),
    ({"EXTENT": "-88.19,-88.19,15.77,15.84 [EPSG:4326]"}, r"Area: the rectangle is empty.*\(parameter EXTENT\)"),
])
def test_bad_input_names_its_parameter_before_the_engine_starts(plugin, qgis_processing, workspace, algorithm_id,
                                                                change, expected):
    import processing
    from qgis.core import QgsProcessingException

    fetched = workspace / "fetched"
    before = sorted(fetched.iterdir()) if fetched.is_dir() else []
    parameters = {"CONNECTOR": "sentinel_aws", "COLLECTION": "sentinel-2-l2a", "EXTENT": mercator(BOTH),
                  "START_DATE": "2018-09-14", "FOOTPRINTS": "TEMPORARY_OUTPUT", "DATES": "TEMPORARY_OUTPUT",
                  "OUTPUT": "TEMPORARY_OUTPUT", **change}
    with pytest.raises(QgsProcessingException, match=expected):
        processing.run(algorithm_id, parameters)
    assert (sorted(fetched.iterdir()) if fetched.is_dir() else []) == before


def test_table_rows_say_what_qgis_holds_and_the_endpoint_a_job_uses(plugin):
    """Credentials held come from QGIS, not from an access check (which CHECK_ACCESS=false skips); the endpoint
    is the user's where set (contract.resolve_endpoints), else the connector's."""
    from geostudio_plugin.processing.list_collections import COLUMNS, rows

    summary = {"connectors": [
        {"id": "sentinelhub", "name": "Sentinel Hub", "endpoint": "https://hub", "access": {},
         "credentials": [{"env": "SH_CLIENT_ID", "label": "OAuth client id"}, {"env": "SH_CLIENT_SECRET"}],
         "collections": [{"collection": "s2_l1c", "modality_tag": "S2L1C", "resolution_m": 10,
                          "bands": [{"band_name": "B02"}, {"band_name": "B03"}]}, {"collection": "dem"}]},
        {"id": "sentinel_aws", "name": "Sentinel AWS", "endpoint": "https://aws", "credentials": [],
         "collections": [{"collection": "sentinel-2-l2a", "long_name": "Sentinel-2 L2A\nmore"}]},
        {"id": "IBMResearchSTAC", "name": "IBM Research STAC", "credentials": [{"env": "CLIENT_ID"}],
         "collections": []}]}
    table = [dict(zip([c for c, _ in COLUMNS], row)) for row in rows(summary, {"sentinel_aws": "http://mirror/"},
                                                                      {"sentinelhub": True})]
    assert [(r["connector"], r["collection"]) for r in table] == [
        ("sentinelhub", "s2_l1c"), ("sentinelhub", "dem"), ("sentinel_aws", "sentinel-2-l2a"), ("IBMResearchSTAC", "")]
    assert table[0]["credentials_needed"] == "OAuth client id, SH_CLIENT_SECRET" and table[0]["bands"] == "B02, B03"
    assert [r["credentials_configured"] for r in table] == ["yes", "yes", "not needed", "no"]
    assert [r["endpoint"] for r in table] == ["https://hub", "https://hub", "http://mirror/", ""]
    assert table[2]["title"] == "Sentinel-2 L2A"


# -------------------------------------------------------------------------------------- engine jobs
@pytest.mark.engine_bound
def test_list_collections_gives_a_row_per_collection_with_credentials_and_endpoint(data_settings, tmp_path):
    import processing

    result = processing.run("geostudio:list_collections", {"CHECK_ACCESS": True,
                                                            "OUTPUT": str(tmp_path / "collections.gpkg")})
    rows = features(result["OUTPUT"])
    by_key = {(r["connector"], r["collection"]): r for r in rows}
    aws = by_key[("sentinel_aws", "sentinel-2-l2a")]
    assert aws["modality_tag"] == "S2L2A" and aws["endpoint"] == data_settings.stac_url
    assert aws["access"] == "ready" and aws["credentials_configured"] == "not needed"
    assert {"red", "green", "blue", "nir", "scl"} <= set(aws["bands"].split(", "))
    hub = by_key[("sentinelhub", "s2_l1c")]
    assert hub["credentials_needed"] == "OAuth client id, OAuth client secret"
    assert hub["credentials_configured"] == "no" and hub["access"] == "credentials missing"
    assert {("sentinelhub", "s1_grd"), ("nasa_earthdata", "HLSL30_2.0"), ("IBMResearchSTAC", "marida-ndvi")} \
        <= set(by_key)  # marida-ndvi: discovered from the endpoint at run time
    assert all(not r["_geometry"] or r["_geometry"].isNull() for r in rows)  # a table


@pytest.mark.engine_bound
def test_check_availability_gives_the_footprints_and_dates_of_the_area(data_settings, tmp_path):
    import processing
    from qgis.core import QgsGeometry, QgsRectangle

    result = processing.run("geostudio:check_availability", {
        "CONNECTOR": "sentinel_aws", "COLLECTION": "sentinel-2-l2a", "EXTENT": mercator(BOTH),
        "START_DATE": "2018-08-01", "END_DATE": "2018-09-30", "MAX_CLOUD": 80,
        "FOOTPRINTS": str(tmp_path / "scenes.gpkg"), "DATES": str(tmp_path / "dates.gpkg")})
    assert result["DATE_LIST"] == ",".join(DAYS) and result["SCENE_COUNT"] == 2
    truth = data_settings.truth
    area = QgsGeometry.fromRect(QgsRectangle(*BOTH))
    scenes = features(result["FOOTPRINTS"])
    assert sorted(s["date"] for s in scenes) == list(DAYS)
    for scene in scenes:
        item = truth[scene["scene_id"]]  # a real item of the server, on its own date
        assert item["date"] == scene["date"] and scene["datetime"].startswith(scene["date"])
        assert scene["cloud_cover"] == item["cloud_cover"]
        assert scene["_geometry"].intersects(area)
        box = scene["_geometry"].boundingBox()
        assert [round(v, 6) for v in (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())] == \
            [round(v, 6) for v in item["bbox"]]
    dates = features(result["DATES"])
    assert [(d["date"], d["scenes"]) for d in dates] == [(DAYS[0], 1), (DAYS[1], 1)]


def sampler(path: str):
    """value(x, y, band) of a raster at a point given in EPSG:4326, and the layer."""
    from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject,
                           QgsRasterLayer)

    layer = QgsRasterLayer(path, "r")
    to_layer = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"), layer.crs(), QgsProject.instance())

    def value(x: float, y: float, band: int, dx: float = 0, dy: float = 0) -> float:
        point = to_layer.transform(QgsPointXY(x, y))
        found, ok = layer.dataProvider().sample(QgsPointXY(point.x() + dx, point.y() + dy), band)
        assert ok, (path, x, y)
        return found

    return value


def assert_server_pixels(path: str, truth: dict, bands: dict[int, int], area) -> None:
    """A fetched raster holds the server's data: EPSG:4326 (the engine's output grid), float32, nodata -9999,
    covering ``area``, and at fetched pixel centres across the date's patch the MARIDA reflectances the server
    serves (DN x 0.0001 - 0.1) for ``bands`` {fetched band: MARIDA band}, 10 m bands only (20 m ones are served
    as 2x2 means). ``truth``: the server's record of the item of that date."""
    from osgeo import gdal

    raster = gdal.Open(path)
    assert raster.GetRasterBand(1).DataType == gdal.GDT_Float32 and raster.GetRasterBand(1).GetNoDataValue() == -9999
    srs = raster.GetSpatialRef()
    assert (srs.GetAuthorityName(None), srs.GetAuthorityCode(None)) == ("EPSG", "4326")
    left, dx, _, top, _, dy = raster.GetGeoTransform()
    right, bottom = left + dx * raster.RasterXSize, top + dy * raster.RasterYSize
    assert left <= area[0] + dx and right >= area[2] - dx and bottom <= area[1] - dy and top >= area[3] + dy
    west, south, east, north = truth["bbox"]
    fetched, source = sampler(path), sampler(truth["source"])
    near = [(0, 0), (10, 0), (-10, 0), (0, 10), (0, -10)]  # the source pixel, or a 10 m neighbour (resampling)
    matches = total = 0
    for fx in (0.2, 0.35, 0.5, 0.65, 0.8):
        for fy in (0.25, 0.5, 0.75):
            x, y = west + fx * (east - west), south + fy * (north - south)
            if not (area[0] < x < area[2] and area[1] < y < area[3]):
                continue
            col, row = int((x - left) / dx), int((y - top) / dy)
            x, y = left + (col + 0.5) * dx, top + (row + 0.5) * dy
            for band, source_band in bands.items():
                total += 1
                value = fetched(x, y, band)
                matches += any(abs(value - source(x, y, source_band, *d)) < 1e-3 for d in near)
    assert total >= 20 and matches == total, (path, matches, total)


def server_item(stac, day: str) -> dict:
    """The server's record of the Sentinel-2 item of ``day`` over BOTH (tests/support/stac_data.py)."""
    (item,) = [i for k, i in stac.truth.items() if k.startswith("S2") and i["date"] == day
               and i["source"].endswith(("16PCC_35.tif", "16PCC_30.tif"))]
    return item
