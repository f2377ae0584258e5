"""The dock path and the Processing path build the same spec for the same inputs (one builder, one rule each).

No engine runs here: the specs are compared as they would be sent."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLES

HOLDOUT = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"


@pytest.fixture()
def projected_layer(qgis_new_project, tmp_path):
    """The holdout scene warped to UTM 15N (EPSG:32615), in the project."""
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    path = tmp_path / "holdout_utm.tif"
    gdal.Warp(str(path), str(HOLDOUT), dstSRS="EPSG:32615")
    layer = QgsRasterLayer(str(path), "holdout utm")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32615"
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeAllMapLayers()


def processing_context():
    from qgis.core import QgsProcessingContext, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    return context


def test_inference_spec_is_the_same_from_the_dock_and_from_processing(extended_iface, projected_layer, tmp_path):
    from qgis.core import QgsRectangle, QgsReferencedRectangle

    from geostudio_plugin.gui.inference_dock import InferenceDock
    from geostudio_plugin.processing.infer_raster import InferRasterAlgorithm

    full = projected_layer.extent()
    # whole metres: the extent widget keeps what its text fields show (QgsExtentWidget rounds to its decimals)
    quarter = QgsRectangle(round(full.xMinimum()), round(full.center().y()), round(full.center().x()),
                           round(full.yMaximum()))
    dock = InferenceDock(extended_iface)
    dock.ui.tuneCombo.addItem("water (tune-1)", "tune-1")
    dock.ui.layerCombo.setLayer(projected_layer)
    dock.ui.extentWidget.setOutputExtentFromUser(quarter, projected_layer.crs())
    from_dock = dock.build_payload()

    algorithm = InferRasterAlgorithm().createInstance()
    algorithm.initAlgorithm({})
    output = str(tmp_path / "prediction.tif")
    for extent in (QgsReferencedRectangle(quarter, projected_layer.crs()),
                   f"{quarter.xMinimum()!r},{quarter.xMaximum()!r},{quarter.yMinimum()!r},{quarter.yMaximum()!r}"
                   " [EPSG:32615]"):
        from_processing = algorithm.build_spec({"INPUT": projected_layer, "MODEL": "tune-1", "EXTENT": extent,
                                                "OUTPUT": output}, processing_context())
        assert from_processing.pop("output_path") == output
        assert from_processing == from_dock
    (minx, miny, maxx, maxy), = from_dock["spatial_domain"]["bbox"]
    assert -95 < minx < maxx < -94 and 38 < miny < maxy < 39  # degrees, not metres
    assert from_dock["spatial_domain"]["urls"] == [projected_layer.source()]

    # no extent: the whole raster from both
    dock.ui.extentWidget.clear()
    whole = algorithm.build_spec({"INPUT": projected_layer, "MODEL": "tune-1", "OUTPUT": output},
                                 processing_context())
    whole.pop("output_path")
    assert whole == dock.build_payload() and whole["spatial_domain"]["bbox"] == []
    dock.deleteLater()


def test_onboarding_endpoints_follow_one_rule_from_the_dock_and_from_processing(extended_iface, tmp_path):
    """A payload naming endpoints for two connectors, the Connectors settings naming another for one of them:
    the setting wins for that one, the payload's own applies to the other, on both paths."""
    from geostudio_plugin import credentials
    from geostudio_plugin.gui.onboarding_dock import OnboardingDock
    from geostudio_plugin.processing.onboard_dataset import OnboardDatasetAlgorithm

    payload = json.loads((SAMPLES.parents[2] / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    first = payload["data_sources"][0]
    payload["data_sources"] = [
        {**first, "connector": "sentinel_aws", "collection": "sentinel-2-l2a"},
        {**first, "connector": "IBMResearchSTAC", "collection": "marida-ndvi", "file_suffix": "_NDVI.tif",
         "modality_tag": "NDVI"},
    ]
    payload["onboarding_options"] = {**payload.get("onboarding_options", {}),
                                     "endpoint": "https://payload.example/aws",  # the older single form
                                     "endpoints": {"IBMResearchSTAC": "https://payload.example/ibm"}}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    credentials.set_endpoint("sentinel_aws", "https://settings.example/aws")
    try:
        dock = OnboardingDock(extended_iface)
        dock.load_payload(payload)
        from_dock = dock.build_payload()
        algorithm = OnboardDatasetAlgorithm().createInstance()
        algorithm.initAlgorithm({})
        from_processing = algorithm.build_payload({"PAYLOAD": str(path)}, processing_context())
    finally:
        credentials.set_endpoint("sentinel_aws", "")
    expected = {"sentinel_aws": "https://settings.example/aws", "IBMResearchSTAC": "https://payload.example/ibm"}
    for built in (from_dock, from_processing):
        options = built["onboarding_options"]
        assert options["endpoints"] == expected
        assert "endpoint" not in options  # folded into endpoints, where the rule decided it
        assert [(s["connector"], s["collection"]) for s in built["data_sources"]] == [
            ("sentinel_aws", "sentinel-2-l2a"), ("IBMResearchSTAC", "marida-ndvi")]
    assert payload["onboarding_options"]["endpoint"] == "https://payload.example/aws"  # the input is not changed
    dock.deleteLater()


def test_area_inference_payload_is_the_same_from_the_dock_and_from_processing(extended_iface):
    """An area in Web Mercator, a range with every date, a cloud limit and two masks: one payload on both paths."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsReferencedRectangle
    from qgis.PyQt.QtCore import QDate

    from geostudio_plugin import credentials
    from geostudio_plugin.gui.inference_dock import InferenceDock
    from geostudio_plugin.processing.infer_area import InferAreaAlgorithm

    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    area = QgsRectangle(1463000, 1321000, 1471000, 1329000)  # whole metres (the widget keeps what it shows)
    dock = InferenceDock(extended_iface)
    dock.ui.tuneCombo.addItem("water (tune-1)", "tune-1")
    dock.ui.tuneCombo.setCurrentIndex(dock.ui.tuneCombo.findData("tune-1"))
    dock.ui.modeCombo.setCurrentIndex(dock.ui.modeCombo.findText("Area and dates"))
    dock.ui.areaExtentWidget.setOutputExtentFromUser(area, mercator)
    dock.ui.startDateEdit.setDate(QDate(2024, 9, 10))
    dock.ui.endDateEdit.setDate(QDate(2024, 9, 14))
    dock.ui.everyDateCheck.setChecked(True)
    dock.ui.maxccSpin.setValue(30)
    dock.ui.cloudMaskCheck.setChecked(True)
    dock.ui.waterMaskCheck.setChecked(True)
    from_dock = dock.area_request().to_payload(credentials.endpoints())

    algorithm = InferAreaAlgorithm().createInstance()
    algorithm.initAlgorithm({})
    from_processing = algorithm.build_payload({
        "MODEL": "tune-1", "EXTENT": QgsReferencedRectangle(area, mercator), "START_DATE": "2024-09-10",
        "END_DATE": "2024-09-14", "EVERY_DATE": True, "MAX_CLOUD": 30, "CLOUD_MASK": True, "WATER_MASK": True},
        processing_context())
    # the dock's area widget shows the area in degrees and keeps 9 decimals of them (below a millimetre)
    bbox_dock, bbox_processing = from_dock["spatial_domain"].pop("bbox"), from_processing["spatial_domain"].pop("bbox")
    assert all(abs(a - b) < 1e-8 for a, b in zip(bbox_dock[0], bbox_processing[0])), (bbox_dock, bbox_processing)
    assert from_processing == from_dock
    (minx, miny, maxx, maxy), = bbox_dock
    assert 13.1 < minx < maxx < 13.3 and 11.7 < miny < maxy < 11.9  # degrees, not metres
    assert from_dock["temporal_domain"] == ["2024-09-10_2024-09-14"] and from_dock["temporal_each"] is True
    assert from_dock["maxcc"] == 30 and from_dock["post_processing"]["cloud_masking"] == "True"
    dock.deleteLater()


def test_search_and_fetch_specs_are_the_same_from_the_connectors_dock_and_from_processing(extended_iface,
                                                                                         monkeypatch):
    """Check availability and Fetch, from the Connectors dock and from Processing's Data algorithms: one builder,
    one extent rule (a Web Mercator area), the user's endpoint for the connector."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsReferencedRectangle
    from qgis.PyQt.QtCore import QDate, Qt
    from qgis.PyQt.QtWidgets import QListWidgetItem

    from geostudio_plugin import credentials
    from geostudio_plugin.gui.catalog_store import CatalogStore
    from geostudio_plugin.gui.connectors_dock import ConnectorsDock
    from geostudio_plugin.processing import check_availability, data_source, fetch_imagery

    web = QgsCoordinateReferenceSystem("EPSG:3857")
    area = QgsRectangle(-9817000, 1779000, -9812000, 1786000)  # whole metres (the extent widget rounds)
    credentials.set_endpoint("sentinel_aws", "http://127.0.0.1:9/stac/")
    dock = ConnectorsDock(extended_iface, CatalogStore())
    try:
        sent = []
        monkeypatch.setattr(dock, "start_engine_task", lambda _title, command, spec, *_a, **_k: sent.append(
            (command, spec)))
        dock.selected = {"kind": "collection", "connector": "sentinel_aws", "collection": "sentinel-2-l2a"}
        dock.ui.extentWidget.setOutputExtentFromUser(area, web)
        dock.ui.dateStartEdit.setDate(QDate(2018, 8, 1))
        dock.ui.dateEndEdit.setDate(QDate(2018, 9, 30))
        dock.ui.maxccSpin.setValue(40)
        dock.check_availability()
        for day in ("2018-08-30", "2018-09-14"):  # the dates a search found, ticked
            item = QListWidgetItem(day)
            item.setData(Qt.ItemDataRole.UserRole, day)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            dock.ui.datesList.addItem(item)
        dock.ui.bandsEdit.setText("red, green nir")
        dock.fetch_checked()

        algorithm = fetch_imagery.FetchImageryAlgorithm()
        algorithm.initAlgorithm({})
        parameters = {"CONNECTOR": "sentinel_aws", "COLLECTION": "sentinel-2-l2a",
                      "EXTENT": QgsReferencedRectangle(area, web), "START_DATE": "2018-08-01",
                      "END_DATE": "2018-09-30", "MAX_CLOUD": 40}
        request = data_source.read_source(algorithm, parameters, processing_context())
        from_processing = [("search", check_availability.search_spec(request)),
                           ("fetch", fetch_imagery.fetch_spec(request, ["2018-08-30", "2018-09-14"],
                                                              fetch_imagery.band_list("red, green nir")))]
        for (_, dock_spec), (_, processing_spec) in zip(sent, from_processing):  # the extent widget's rounding
            bbox_dock, bbox_processing = dock_spec.pop("bbox"), processing_spec.pop("bbox")
            assert all(abs(a - b) < 1e-8 for a, b in zip(bbox_dock, bbox_processing)), (bbox_dock, bbox_processing)
            dock_spec["bbox"] = bbox_dock
        assert [(c, {k: v for k, v in s.items() if k != "bbox"}) for c, s in sent] == from_processing
        search = sent[0][1]
        assert search["endpoint"] == "http://127.0.0.1:9/stac/" and search["maxcc"] == 40
        minx, miny, maxx, maxy = search["bbox"]
        assert -88.2 < minx < maxx < -88.1 and 15.7 < miny < maxy < 15.9  # degrees, not metres
        assert sent[1][1]["bands"] == ["red", "green", "nir"]
    finally:
        credentials.set_endpoint("sentinel_aws", "")
        dock.deleteLater()
