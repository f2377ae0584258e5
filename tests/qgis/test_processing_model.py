"""The graphical model resources/models/fetch_infer_polygonize.model3 (Fetch imagery -> Run inference on raster
layer -> GDAL Polygonize) loads and runs through processing.run: Sentinel-2 bands fetched from the loopback STAC
server in the order the MARIDA model reads them (the server's pixels), the model's prediction on their grid, and
polygons of its classes."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import MARIDA_CLASSES  # noqa: E402

MODEL_FILE = REPO / "resources" / "models" / "fetch_infer_polygonize.model3"
PATCH = (-88.18, 15.817, -88.161, 15.836)  # inside the 16PCC patch seen on 2018-09-14 (stac_data.py)


@pytest.fixture()
def marida_settings(plugin, qgis_processing, marida_stac, marida_workspace, session_workspace, marida_tune):
    """The loopback catalogue as the Sentinel AWS endpoint and the MARIDA model's workspace; set back after."""
    from geostudio_plugin import credentials, settings

    settings.set_workspace(str(marida_workspace))
    credentials.set_endpoint("sentinel_aws", marida_stac.stac_url)
    yield marida_tune
    credentials.set_endpoint("sentinel_aws", "")
    settings.set_workspace(str(session_workspace))


def load_model():
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(MODEL_FILE))
    return model


def test_the_model_chains_fetch_inference_and_polygonize(plugin, qgis_processing):
    model = load_model()
    children = model.childAlgorithms()
    assert {c.algorithmId() for c in children.values()} == {
        "geostudio:fetch_imagery", "geostudio:infer_raster", "gdal:polygonize"}
    assert children["infer"].parameterSources()["INPUT"][0].outputChildId() == "fetch"
    assert children["infer"].parameterSources()["INPUT"][0].outputName() == "OUTPUT_RASTER"
    assert children["polygonize"].parameterSources()["INPUT"][0].outputChildId() == "infer"
    assert sorted(p.name() for p in model.parameterDefinitions()) == [
        "BANDS", "DATE", "EXTENT", "MAX_CLOUD", "MODEL", "fetch:fetched", "infer:prediction", "polygonize:polygons"]
    assert model.parameterDefinition("BANDS").defaultValue().split(", ") == [  # MARIDA's positions 0-7
        "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir"]
    assert children["fetch"].parameterSources()["LOAD"][0].staticValue() is False  # intermediate: not loaded
    # the default again where the input is left out (processing.run and qgis_process leave it null)
    assert children["fetch"].parameterSources()["BANDS"][0].expression().startswith("coalesce(@BANDS, 'coastal, ")


def Said():  # noqa: N802 - a QgsProcessingFeedback subclass, built when QGIS runs
    """A feedback that keeps the errors reported, so a failed step shows the engine's message in the test."""
    from qgis.core import QgsProcessingFeedback

    class _Said(QgsProcessingFeedback):
        def __init__(self) -> None:
            super().__init__()
            self.errors: list[str] = []

        def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 - QGIS API
            self.errors.append(error)
            super().reportError(error, fatalError)

    return _Said()


def raster_values(path: str) -> set[int]:
    """The uint8 values of a one-band raster, nodata left out (bytes: no numpy in the QGIS test process)."""
    from osgeo import gdal

    raster = gdal.Open(path)
    band = raster.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    return set(band.ReadRaster()) - {int(band.GetNoDataValue())}


@pytest.mark.engine_bound
def test_the_model_runs_and_its_polygons_carry_the_predicted_classes(marida_settings, marida_stac, tmp_path):
    import processing
    from osgeo import gdal
    from qgis.core import QgsGeometry, QgsProcessingException, QgsRectangle, QgsVectorLayer
    from test_processing_data import assert_server_pixels, mercator, server_item

    feedback = Said()
    try:
        result = processing.run(load_model(), {
            "EXTENT": mercator(PATCH), "DATE": "2018-09-14", "MODEL": marida_settings,
            "fetch:fetched": str(tmp_path / "fetched"), "infer:prediction": str(tmp_path / "prediction.tif"),
            "polygonize:polygons": str(tmp_path / "classes.gpkg")}, feedback=feedback)
    except QgsProcessingException as error:
        pytest.fail(f"{error}: {feedback.errors}")
    # Fetch imagery (run by processing in the model): the date's raster in the folder, the model's bands in its
    # order, the server's pixels
    assert result["fetch:fetched"] == str(tmp_path / "fetched")
    (fetched,) = sorted((tmp_path / "fetched").iterdir())  # one date, nothing half-copied
    assert fetched.name == "sentinel_aws_sentinel-2-l2a_2018-09-14.tif"
    source = gdal.Open(str(fetched))
    assert [source.GetRasterBand(i + 1).GetDescription() for i in range(source.RasterCount)] == \
        load_model().parameterDefinition("BANDS").defaultValue().split(", ")
    assert_server_pixels(str(fetched), server_item(marida_stac, "2018-09-14"),
                         {2: 2, 3: 3, 4: 4, 8: 8}, PATCH)  # blue, green, red, nir: MARIDA's 10 m bands
    # Run inference on raster layer: the fetched grid, the model's class ids
    prediction = gdal.Open(result["infer:prediction"])
    assert prediction.GetGeoTransform() == source.GetGeoTransform()
    assert (prediction.RasterXSize, prediction.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    classes = raster_values(result["infer:prediction"])
    assert classes and classes <= set(range(1, len(MARIDA_CLASSES) + 1)), classes  # the model's class ids

    polygons = QgsVectorLayer(result["polygonize:polygons"], "classes", "ogr")
    assert polygons.isValid() and polygons.featureCount() > 0
    assert {int(f["DN"]) for f in polygons.getFeatures()} == classes  # one polygon set per predicted class
    assert polygons.crs().authid() == "EPSG:4326"
    area = QgsGeometry.fromRect(QgsRectangle(*PATCH))
    assert any(f.geometry().intersects(area) for f in polygons.getFeatures())
