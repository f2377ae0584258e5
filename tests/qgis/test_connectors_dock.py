"""Connectors dock against a real STAC API and file server on loopback: access states, credentials in the
QGIS authentication database, availability with footprints, fetch into layers; and no secret leaks."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, wait_for

sys.path.insert(0, str(REPO / "tests" / "support"))
from local_stac import LocalStac  # noqa: E402

BBOX = (-88.19, 15.77, -88.15, 15.84)
CANARY = "sh-secret-CANARY-5c81"


@pytest.fixture(scope="module")
def stac(engine_python, tmp_path_factory):
    with LocalStac(engine_python, tmp_path_factory.mktemp("qgis-localstac")) as server:
        yield server


@pytest.fixture()
def auth_db():
    from qgis.core import QgsApplication

    manager = QgsApplication.authManager()
    assert manager.setMasterPassword("geostudio-test-master", True)
    return manager


@pytest.fixture()
def connectors_dock(plugin, stac, auth_db):
    from geostudio_plugin import credentials

    credentials.set_endpoint("sentinel_aws", stac.stac_url)
    credentials.set_endpoint("IBMResearchSTAC", stac.stac_url)
    plugin.toggle_dock("connectors")
    dock = plugin.docks["connectors"]
    wait_for(lambda: dock.ui.tree.topLevelItemCount() > 0, timeout=60)
    yield dock
    for cid in ("sentinel_aws", "IBMResearchSTAC"):
        credentials.set_endpoint(cid, "")


def _top(dock, name):
    tree = dock.ui.tree
    return next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount()) if tree.topLevelItem(i).text(0) == name)


def _child(item, name):
    return next(item.child(i) for i in range(item.childCount()) if item.child(i).text(0) == name)


def test_tree_lists_every_connector_with_modality_tags_and_access(connectors_dock):
    dock = connectors_dock
    tags = {}
    for i in range(dock.ui.tree.topLevelItemCount()):
        top = dock.ui.tree.topLevelItem(i)
        for j in range(top.childCount()):
            tags[(top.text(0), top.child(j).text(0))] = top.child(j).text(1)
    expected = {("Sentinel Hub", "s2_l1c"): "S2L1C", ("Sentinel Hub", "dem"): "DEM", ("Sentinel Hub", "s1_grd"): "S1GRD",
                ("Sentinel Hub", "hls_l30"): "HLS_L30", ("Sentinel Hub", "hls_s30"): "HLS_S30",
                ("Sentinel Hub", "s2_l2a"): "S2L2A", ("NASA Earthdata", "HLSL30_2.0"): "HLS_L30",
                ("NASA Earthdata", "HLSS30_2.0"): "HLS_S30", ("Sentinel AWS (Earth Search)", "sentinel-2-l2a"): "S2L2A",
                ("The Weather Company", "weathercompany-daily-forecast"): "HLS_L30"}
    assert {k: tags.get(k) for k in expected} == expected
    assert _child(_top(dock, "IBM Research STAC"), "marida-ndvi") is not None  # discovered at run time
    assert _top(dock, "Sentinel AWS (Earth Search)").text(3) == "ready"
    assert _top(dock, "Sentinel Hub").text(3) == "needs OAuth client id +1"  # which (issue 10)
    assert "Dem" not in _top(dock, "Sentinel Hub").toolTip(3)
    assert _child(_top(dock, "Sentinel Hub"), "dem").text(2) == "30 m"


def test_availability_shows_dates_and_footprints_then_fetch_loads_true_colour(connectors_dock):
    from qgis.core import QgsCoordinateReferenceSystem, QgsMultiBandColorRenderer, QgsRectangle
    from qgis.PyQt.QtCore import QDate, Qt

    dock = connectors_dock
    dock.ui.tree.setCurrentItem(_child(_top(dock, "Sentinel AWS (Earth Search)"), "sentinel-2-l2a"))
    dock.ui.extentWidget.setOutputExtentFromUser(QgsRectangle(*BBOX), QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.ui.dateStartEdit.setDate(QDate(2018, 10, 1))
    dock.ui.dateEndEdit.setDate(QDate(2018, 10, 10))
    dock.check_availability()
    wait_for(lambda: dock.task is None, timeout=90)
    assert dock.ui.datesList.count() == 0
    assert "Nearest dates with data: 2018-09-14, 2018-08-30" in dock.ui.availabilityLabel.text()

    dock.ui.dateStartEdit.setDate(QDate(2018, 8, 1))
    dock.ui.dateEndEdit.setDate(QDate(2018, 9, 30))
    dock.check_availability()
    wait_for(lambda: dock.task is None, timeout=90)
    assert [dock.ui.datesList.item(i).data(Qt.ItemDataRole.UserRole) for i in range(dock.ui.datesList.count())] == \
        ["2018-08-30", "2018-09-14"]
    footprints = dock.footprints
    assert footprints.featureCount() == 2
    assert sorted(f["date"] for f in footprints.getFeatures()) == ["2018-08-30", "2018-09-14"]
    assert {f["cloud_cover"] for f in footprints.getFeatures()} == {0.0}
    assert footprints.crs().authid() == "EPSG:4326"

    dock.ui.datesList.item(0).setCheckState(Qt.CheckState.Unchecked)  # fetch 2018-09-14 only
    dock.fetch_checked()
    wait_for(lambda: dock.task is None, timeout=120)
    layer, = dock.fetched_layers
    assert layer.isValid() and layer.name() == "sentinel-2-l2a 2018-09-14"
    assert dock.iface.mapCanvas().extent().intersects(layer.extent())  # the map shows the fetched scene
    assert layer.bandCount() == 3 and layer.crs().authid() == "EPSG:4326"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsMultiBandColorRenderer)
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 3)
    names = [layer.dataProvider().displayBandName(i) for i in (1, 2, 3)]
    assert [n.split(" (")[0] for n in names] == ["Band 1: red", "Band 2: green", "Band 3: blue"]
    assert layer.extent().contains(QgsRectangle(BBOX[0] + 0.001, BBOX[1] + 0.001, BBOX[2] - 0.001, BBOX[3] - 0.001))


def test_credentials_live_in_the_auth_db_and_never_leak(connectors_dock, qgis_iface, tmp_path, monkeypatch):
    """Store a known fake secret, run a connection test through the engine, then look for it everywhere."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    for name in ("HTTPS_PROXY", "https_proxy"):  # one answer with or without a network: a proxy that is not there
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    from qgis.core import QgsApplication, QgsProject, QgsSettings

    from geostudio_plugin import credentials

    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda msg, tab, level: logged.append(msg))
    dock = connectors_dock
    dock.ui.tree.setCurrentItem(_top(dock, "Sentinel Hub"))
    dialog = dock.open_credentials()
    dialog.fields["SH_CLIENT_ID"].setText("client-CANARY-11")
    dialog.fields["SH_CLIENT_SECRET"].setText(CANARY)
    dialog.save()
    assert credentials.load("sentinelhub") == {"SH_CLIENT_ID": "client-CANARY-11", "SH_CLIENT_SECRET": CANARY}
    config_id = credentials.authcfg_id("sentinelhub")
    assert config_id in QgsApplication.authManager().configIds()

    dialog = dock.open_credentials()
    assert dialog.fields["SH_CLIENT_SECRET"].text() == CANARY  # read back from the auth DB
    task = dialog.test_connection()
    wait_for(lambda: dialog.task is None, timeout=60)
    # the engine got the credentials (else it would say they are missing) but cannot reach Sentinel Hub here
    assert task.outcome.error["code"] == "connector_refused", task.outcome.error
    assert task.outcome.returncode == 5
    assert "Sentinel Hub" in dialog.statusLabel.text()
    dialog.reject()

    project_file = tmp_path / "project.qgz"
    QgsProject.instance().write(str(project_file))
    QgsSettings().sync()
    places = {
        "spec": str(task.job.spec),
        "engine log": task.outcome.log_path.read_text(),
        "events": str(task.outcome.events),
        "status label": dialog.statusLabel.text(),
        "QGIS log": "\n".join(logged),
        "project": "\n".join(zipfile.ZipFile(project_file).read(n).decode("utf-8", "replace")
                             for n in zipfile.ZipFile(project_file).namelist()),
        "settings": Path(QgsSettings().fileName()).read_text(errors="replace"),
    }
    for where, text in places.items():
        assert CANARY not in text, f"the secret leaked into the {where}"
        assert "client-CANARY-11" not in text, f"the client id leaked into the {where}"
    assert config_id in places["settings"]  # only the id of the auth config is in the settings
    credentials.clear("sentinelhub")
    assert credentials.load("sentinelhub") == {}


def test_connection_test_passes_against_a_reachable_catalogue(connectors_dock, stac):
    dock = connectors_dock
    dock.ui.tree.setCurrentItem(_top(dock, "Sentinel AWS (Earth Search)"))
    dialog = dock.open_credentials()
    assert dialog.endpointEdit.text() == stac.stac_url  # the override, read back from the settings
    assert dialog.fields == {}  # Earth Search needs no credentials
    dialog.test_connection()
    wait_for(lambda: dialog.task is None, timeout=60)
    assert dialog.statusLabel.text().startswith("✔ Sentinel AWS (Earth Search) answered in")
    dialog.reject()


def test_labels_only_onboarding_from_the_datasets_dock_with_two_connectors(plugin, connectors_dock, stac, tmp_path):
    """Tick "Labels only", pick two collections in the Connectors tab, Onboard: one dataset, two modalities."""
    import json

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "debris_2018-09-14.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
            [-88.180, 15.817], [-88.170, 15.817], [-88.170, 15.827], [-88.180, 15.827], [-88.180, 15.817]]]}}]}))
    plugin.toggle_dock("onboarding")
    dock = plugin.docks["onboarding"]
    dock.ui.nameEdit.setText("labels only")
    dock.ui.folderWidget.setFilePath(str(labels))
    dock.ui.fromLabelsCheck.setChecked(True)
    assert not dock.ui.prescanButton.isEnabled() and dock.ui.postDaysSpin.isEnabled()
    table = dock.ui.sourcesTable
    dock.ui.addSourceButton.click()  # removing a row keeps the picked collections on their rows
    table.setCurrentCell(table.rowCount() - 1, 2)
    connectors_dock.ui.tree.setCurrentItem(_child(_top(connectors_dock, "IBM Research STAC"), "marida-ndvi"))
    table.setCurrentCell(table.rowCount() - 2, 0)
    dock.ui.removeSourceButton.click()
    assert dock.row_collection(table.rowCount() - 1)["collection"] == "marida-ndvi"
    assert table.item(table.rowCount() - 1, 2).text() == "IBMResearchSTAC / marida-ndvi"
    while table.rowCount():
        table.setCurrentCell(0, 0)
        dock.ui.removeSourceButton.click()
    for row, (connector, collection, bands) in enumerate([("Sentinel AWS (Earth Search)", "sentinel-2-l2a", "red, green, blue"),
                                                          ("IBM Research STAC", "marida-ndvi", None)]):
        dock.ui.addSourceButton.click()
        table.setCurrentCell(row, 2)
        if bands:
            from qgis.PyQt.QtWidgets import QTableWidgetItem

            table.setItem(row, 3, QTableWidgetItem(bands))
        connectors_dock.ui.tree.setCurrentItem(_child(_top(connectors_dock, connector), collection))
    assert [table.item(r, 2).text() for r in range(2)] == ["sentinel_aws / sentinel-2-l2a",
                                                            "IBMResearchSTAC / marida-ndvi"]
    assert table.item(1, 3).text() == "NDVI" and table.item(1, 1).text() == "MARIDA_NDVI"
    dock.ui.chipSpin.setValue(64)
    payload = dock.build_payload()
    assert payload["onboarding_options"]["from_labels"] is True
    assert payload["onboarding_options"]["endpoints"] == {"sentinel_aws": stac.stac_url,
                                                          "IBMResearchSTAC": stac.stac_url}
    dock.ui.onboardButton.click()
    wait_for(lambda: dock.task is None, timeout=240)
    names = [dock.ui.datasetList.item(i).text() for i in range(dock.ui.datasetList.count())]
    assert any(n.startswith("labels only — Segmentation, ") and "+" in n for n in names), names
    dock.ui.datasetList.setCurrentRow(next(i for i, n in enumerate(names) if n.startswith("labels only")))
    image, label = dock.preview_selected(count=1)
    assert image.isValid() and image.bandCount() == 3 and image.renderer().type() == "multibandcolor"
    assert label.isValid() and image.extent() == label.extent()

