"""Connectors against a real STAC API (rustac) and a Range file server on 127.0.0.1, faults injected by proxies.

The catalogue is built from the bundled MARIDA Sentinel-2 patches: per-band uint16 COGs with the
documented L2A scaling (sentinel_aws) and NDVI NetCDF datacubes read over HTTP (IBMResearchSTAC).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.transform
from conftest import EXIT_EXTERNAL, EXIT_INPUT, EXIT_INVALID_SPEC, REPO, run_engine, run_ok
from rasterio.warp import transform

sys.path.insert(0, str(REPO / "tests" / "support"))
from local_stac import LocalStac, free_port  # noqa: E402

# Two MARIDA patches of tile 16PCC, 1.6 km apart, seen on 2018-08-30 and 2018-09-14.
BBOX = [-88.19, 15.77, -88.15, 15.84]
PCC30, PCC35 = "S2A_16PCC_20180914_30_L2A", "S2A_16PCC_20180830_35_L2A"


@pytest.fixture(scope="module")
def stac(tmp_path_factory):
    with LocalStac(Path(sys.executable), tmp_path_factory.mktemp("localstac")) as server:
        yield server


@pytest.fixture()
def ws(tmp_path) -> Path:
    return tmp_path / "workspace"


def search_spec(stac, **extra) -> dict:
    return {"connector": "sentinel_aws", "endpoint": stac.stac_url, "collection": "sentinel-2-l2a", "bbox": BBOX,
            "date_start": "2018-08-01", "date_end": "2018-09-30", **extra}


def fetch_spec(stac, **extra) -> dict:
    return {"connector": "sentinel_aws", "endpoint": stac.stac_url, "collection": "sentinel-2-l2a", "bbox": BBOX,
            "dates": ["2018-09-14"], "bands": ["red", "nir08"], **extra}


def nothing_left(ws: Path) -> bool:
    return not any((ws / "fetched").glob("*")) and not any((ws / ".tmp").glob("*"))


# ---------------------------------------------------------------- availability


def test_search_finds_the_scenes_and_their_footprints(stac, ws):
    summary = run_ok("search", search_spec(stac), ws).result["summary"]
    assert summary["results"][0]["unique_dates"] == ["2018-08-30", "2018-09-14"]
    found = {f["id"]: f for f in summary["footprints"]["features"]}
    assert set(found) == {PCC30, PCC35}
    for item in stac.items("sentinel-2-l2a"):
        if item["id"] in found:
            assert found[item["id"]]["geometry"]["coordinates"] == item["geometry"]["coordinates"]
            assert found[item["id"]]["properties"]["cloud_cover"] == item["properties"]["eo:cloud_cover"]
    assert summary["suggested_dates"] == []


def test_search_filters_by_cloud_cover(stac, ws):
    cloudy = next(i for i in stac.items("sentinel-2-l2a") if i["properties"]["eo:cloud_cover"] > 5)
    box = cloudy["bbox"]
    day = cloudy["properties"]["datetime"][:10]
    spec = search_spec(stac, bbox=box, date_start=day, date_end=day)
    assert run_ok("search", {**spec, "maxcc": 100}, ws).result["summary"]["results"][0]["unique_dates"] == [day]
    assert run_ok("search", {**spec, "maxcc": 5}, ws).result["summary"]["results"][0]["unique_dates"] == []


def test_no_scene_in_the_range_suggests_the_nearest_dates(stac, ws):
    summary = run_ok("search", search_spec(stac, date_start="2018-10-01", date_end="2018-10-10"), ws).result["summary"]
    assert summary["results"][0]["unique_dates"] == []
    assert summary["suggested_dates"] == ["2018-09-14", "2018-08-30"]


def test_search_accepts_the_studio_data_advice_payload(stac, ws):
    studio = {"connector": "sentinel_aws", "endpoint": stac.stac_url, "collections": ["s2_l2a"],
              "dates": ["2018-09-01_2018-09-30"], "bbox": [BBOX], "maxcc": 90.0, "pre_days": 1, "post_days": 1}
    run = run_ok("search", studio, ws)
    assert run.result["summary"]["collection"] == "sentinel-2-l2a"
    assert run.result["summary"]["results"][0]["unique_dates"] == ["2018-09-14"]
    assert any("Studio's name for 'sentinel-2-l2a'" in e["message"] for e in run.of("log"))


# ------------------------------------------------------------------------ fetch


def _compare_with_source(path: Path, band_index: int, source: Path, source_band: int, factor: int = 1) -> np.ndarray:
    """|fetched - source reflectance| at every valid fetched pixel whose centre lies well inside one source cell.

    ``factor`` 2 compares a 20 m band with the 2x2 means of MARIDA's 10 m reflectances it was made from.
    Pixels whose centre falls within 0.2 cell of a cell edge are left out: nearest resampling may take
    either neighbour there."""
    with rasterio.open(path) as out, rasterio.open(source) as src:
        data = out.read(band_index).astype("float64")
        reference = src.read(source_band).astype("float64")
        grid = src.transform
        if factor > 1:
            rows, cols = reference.shape[0] // factor, reference.shape[1] // factor
            reference = reference[:rows * factor, :cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3))
            grid = grid * grid.scale(factor, factor)
        r, c = np.mgrid[0:out.height, 0:out.width]
        keep = data != out.nodata
        xs, ys = rasterio.transform.xy(out.transform, r[keep], c[keep])
        sx, sy = transform(out.crs, src.crs, list(xs), list(ys))
        fc, fr = ~grid * (np.asarray(sx), np.asarray(sy))
        inside = (fr >= 0) & (fr < reference.shape[0]) & (fc >= 0) & (fc < reference.shape[1])
        central = (np.abs(fr % 1 - 0.5) < 0.3) & (np.abs(fc % 1 - 0.5) < 0.3)
        use = inside & central
        expected = reference[fr[use].astype(int), fc[use].astype(int)]
        return np.abs(data[keep][use] - expected)


def test_fetch_writes_a_scaled_cog_per_date_with_bands_in_order(stac, ws):
    run = run_ok("fetch", fetch_spec(stac, dates=["2018-08-30", "2018-09-14"], bands=["red", "green", "blue", "B8A"]),
                 ws)
    files = run.result["summary"]["files"]
    assert [f["date"] for f in files] == ["2018-08-30", "2018-09-14"]
    for info in files:
        with rasterio.open(info["path"]) as out:
            assert out.crs.to_epsg() == 4326 and out.count == 4 and out.dtypes[0] == "float32"
            assert out.descriptions == ("red", "green", "blue", "nir08")
            assert out.nodata == -9999
            assert out.driver == "GTiff"
            # a Cloud-Optimized GeoTIFF: GDAL's COG layout, internal tiles and overviews
            assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG", out.tags(ns="IMAGE_STRUCTURE")
            assert out.profile.get("tiled") and out.block_shapes[0] in ((256, 256), (128, 128))
            assert out.profile["blockxsize"] == out.profile["blockysize"] == out.block_shapes[0][0]
            assert max(out.width, out.height) > out.block_shapes[0][0]  # large enough to need overviews
            assert out.overviews(1) and out.overviews(1)[0] == 2, out.overviews(1)
            left, bottom, right, top = out.bounds
            res = max(out.res)
            assert left <= BBOX[0] + res and bottom <= BBOX[1] + res and right >= BBOX[2] - res and top >= BBOX[3] - res
        assert info["rgb"] == [1, 2, 3]
        assert info["scales"] == [0.0001] * 4 and info["offsets"] == [-0.1] * 4
    truth = stac.truth
    # every band of both dates equals MARIDA's reflectance (B04, B03, B02 at 10 m; B8A, a 20 m band, as the
    # 2x2 mean it was made from) within 1e-3: DN rounding is 5e-5, a wrong pixel or scale is far more
    for info, item in ((files[0], PCC35), (files[1], PCC30)):
        for band_index, (source_band, factor) in enumerate(((4, 1), (3, 1), (2, 1), (9, 2)), start=1):
            errors = _compare_with_source(Path(info["path"]), band_index, Path(truth[item]["source"]), source_band,
                                          factor)
            assert errors.size > 2000, (info["date"], band_index, errors.size)
            assert errors.max() < 1e-3, (info["date"], band_index, float(errors.max()))


def test_each_date_holds_only_its_own_scenes(stac, ws):
    """Terrakit 0.2.2 mosaics the whole range into every date; GeoStudio fetches date by date."""
    files = run_ok("fetch", fetch_spec(stac, dates=["2018-08-30", "2018-09-14"], bands=["red"]), ws).result["summary"]["files"]
    truth = stac.truth
    for info, own, other in ((files[0], PCC35, PCC30), (files[1], PCC30, PCC35)):
        with rasterio.open(info["path"]) as out:
            data = out.read(1)

            def valid_share(item_id: str) -> float:
                west, south, east, north = truth[item_id]["bbox"]
                window = rasterio.windows.from_bounds(west + 0.001, south + 0.001, east - 0.001, north - 0.001,
                                                      out.transform).round_offsets().round_lengths()
                block = data[int(window.row_off):int(window.row_off + window.height),
                             int(window.col_off):int(window.col_off + window.width)]
                return float((block != -9999).mean())

            assert valid_share(own) > 0.95 and valid_share(other) == 0.0


def test_fetch_from_ibm_research_stac_reads_netcdf_over_http(stac, ws):
    spec = {"connector": "IBMResearchSTAC", "endpoint": stac.stac_url, "collection": "marida-ndvi", "bbox": BBOX,
            "dates": ["2018-09-14"], "bands": ["NDVI"]}
    search = run_ok("search", {**spec, "date_start": "2018-08-01", "date_end": "2018-09-30"}, ws)
    assert search.result["summary"]["results"][0]["unique_dates"] == ["2018-08-30", "2018-09-14"]
    info, = run_ok("fetch", spec, ws).result["summary"]["files"]
    source = stac.truth["marida-ndvi-16PCC-20180914-30"]
    with rasterio.open(info["path"]) as out, rasterio.open(source["source"]) as src:
        assert out.descriptions == ("NDVI",) and out.crs == src.crs and out.transform == src.transform
        b4, b8 = src.read(4), src.read(8)
        assert np.allclose(out.read(1), (b8 - b4) / (b8 + b4), atol=1e-5)


def test_catalog_discovers_ibm_collections_and_checks_access(stac, ws):
    spec = {"check_access": True, "discover": True, "timeout_s": 2,
            "endpoints": {"IBMResearchSTAC": stac.stac_url, "sentinel_aws": stac.stac_url}}
    connectors = {c["id"]: c for c in run_ok("catalog", spec, ws).result["summary"]["connectors"]}
    ibm = connectors["IBMResearchSTAC"]
    assert [c["collection"] for c in ibm["collections"]] == ["marida-ndvi"]
    assert [b["band_name"] for b in ibm["collections"][0]["bands"]] == ["NDVI"]
    assert ibm["access"]["state"] == "ready" and connectors["sentinel_aws"]["access"]["state"] == "ready"
    assert connectors["sentinelhub"]["access"]["state"] == "credentials missing"
    assert "SH_CLIENT_ID" not in connectors["sentinelhub"]["access"]["detail"]  # labels, not variable names
    assert "OAuth client id" in connectors["sentinelhub"]["access"]["detail"]


def test_catalog_marks_a_stopped_endpoint_unreachable(ws):
    dead = f"http://127.0.0.1:{free_port()}/"
    spec = {"check_access": True, "timeout_s": 2, "endpoints": {"sentinel_aws": dead}}
    sentinel_aws = next(c for c in run_ok("catalog", spec, ws).result["summary"]["connectors"]
                        if c["id"] == "sentinel_aws")
    assert sentinel_aws["access"]["state"] == "unreachable"
    assert dead in sentinel_aws["access"]["detail"]


# ----------------------------------------------------------------------- faults


@pytest.fixture()
def fast_failures(monkeypatch):
    monkeypatch.setenv("GEOSTUDIO_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("GEOSTUDIO_HTTP_RETRIES", "1")
    monkeypatch.setenv("GEOSTUDIO_HTTP_BACKOFF", "0.2")


@pytest.mark.parametrize("where, mode, code", [
    ("stac", "500", "connector_server"), ("asset", "500", "connector_server"),
    ("stac", "truncate", "connector_truncated"),
    ("asset", "truncate", "connector_truncated"),
    ("stac", "slow", "connector_timeout"), ("asset", "slow", "connector_timeout"),
])
def test_faults_give_a_clear_error_in_bounded_time_and_no_file(stac, ws, fast_failures, where, mode, code):
    proxy = stac.stac_proxy if where == "stac" else stac.asset_proxy
    proxy.slow_seconds = 60  # without timeouts the job would hang for minutes
    before, before_asked = len(proxy.requests), len(proxy.asked)
    proxy.mode = mode
    try:
        started = time.monotonic()
        run = run_engine("fetch", fetch_spec(stac), ws, timeout=120)
        elapsed = time.monotonic() - started
    finally:
        proxy.mode = "pass"
    assert run.returncode == EXIT_EXTERNAL, run.describe()
    assert run.error["code"] == code
    assert run.error["message"].startswith("Sentinel AWS (Earth Search)")
    assert run.error["hint"]
    assert f"127.0.0.1:{proxy.port}" in run.error["message"]  # names the server that failed
    assert elapsed < 40, f"took {elapsed:.0f} s with a 2 s timeout and 1 retry"
    assert nothing_left(ws)
    if mode != "slow":  # a transient failure is retried: the very same request (method, path, byte range) again;
        # the bands' HEAD and GET, or GDAL reading on past a short body, are different requests
        asked = Counter(proxy.asked[before_asked:])
        assert max(asked.values()) >= 2, proxy.asked[before_asked:]


def test_a_stopped_server_is_named_with_what_to_check(ws, fast_failures):
    dead = f"http://127.0.0.1:{free_port()}/"
    run = run_engine("search", {"connector": "sentinel_aws", "endpoint": dead, "collection": "sentinel-2-l2a",
                                "bbox": BBOX, "date_start": "2018-08-01", "date_end": "2018-09-30"}, ws, timeout=60)
    assert run.returncode == EXIT_EXTERNAL and run.error["code"] == "connector_refused"
    assert "cannot connect to 127.0.0.1" in run.error["message"] and "endpoint URL" in run.error["hint"]


def test_a_slow_netcdf_asset_times_out(stac, ws, fast_failures):
    stac.asset_proxy.slow_seconds = 60
    stac.asset_proxy.mode = "slow"
    try:
        started = time.monotonic()
        run = run_engine("fetch", {"connector": "IBMResearchSTAC", "endpoint": stac.stac_url,
                                   "collection": "marida-ndvi", "bbox": BBOX, "dates": ["2018-09-14"],
                                   "bands": ["NDVI"]}, ws, timeout=120)
    finally:
        stac.asset_proxy.mode = "pass"
    assert run.returncode == EXIT_EXTERNAL and run.error["code"] == "connector_timeout", run.describe()
    assert run.error["message"].startswith("IBM Research STAC")
    assert time.monotonic() - started < 40
    assert nothing_left(ws)


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, code, words", [  # all spec errors: exit 3
    ({"connector": "copernicus"}, "unknown_connector", ["copernicus", "sentinel_aws", "sentinelhub"]),
    ({"collection": "landsat-c2-l2"}, "unknown_collection", ["landsat-c2-l2", "sentinel-2-l2a"]),
    ({"bands": ["red", "B99"]}, "unknown_band", ["B99", "nir08", "swir22"]),
    ({"bbox": [-88.15, 15.77, -88.19, 15.84]}, "invalid_spec", ["bbox", "inverted"]),
    ({"bbox": [-88.19, 15.77, -88.19, 15.84]}, "invalid_spec", ["bbox", "empty"]),
    ({"maxcc": 120}, "invalid_spec", ["maxcc"]),
])
def test_bad_fetch_input_is_named_with_the_valid_choices(stac, ws, change, code, words):
    run = run_engine("fetch", fetch_spec(stac, **change), ws)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == code
    text = run.error["message"] + " " + run.error["hint"] + json.dumps(run.error.get("details"))
    for word in words:
        assert word in text, (word, run.error)
    assert nothing_left(ws)


def test_fetch_of_a_date_without_a_scene_is_no_data_with_the_nearest_dates(stac, ws):
    run = run_engine("fetch", fetch_spec(stac, dates=["2018-09-01"]), ws)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "no_data"
    assert "2018-09-01" in run.error["message"]
    assert "2018-08-30" in run.error["hint"] and "2018-09-14" in run.error["hint"]
    assert nothing_left(ws)


def test_end_date_before_start_date(stac, ws):
    run = run_engine("search", search_spec(stac, date_start="2018-09-30", date_end="2018-08-01"), ws)
    assert run.returncode == EXIT_INVALID_SPEC
    assert "date_end 2018-08-01 is before date_start 2018-09-30" in run.error["message"]


def test_missing_credentials_name_the_credential_and_where_to_enter_it(ws, monkeypatch):
    for name in ("SH_CLIENT_ID", "SH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    run = run_engine("search", {"connector": "sentinelhub", "collection": "s2_l2a", "bbox": BBOX,
                                "date_start": "2024-01-01", "date_end": "2024-01-31"}, ws)
    assert run.returncode == EXIT_INPUT and run.error["code"] == "credentials_missing"
    assert "OAuth client id (SH_CLIENT_ID)" in run.error["message"]
    assert "OAuth client secret (SH_CLIENT_SECRET)" in run.error["message"]
    assert "Credentials" in run.error["hint"] and "QGIS authentication database" in run.error["hint"]


def test_secrets_never_reach_events_or_the_log(ws, monkeypatch):
    """Sentinel Hub is unreachable (through a proxy that is not there): the connection test fails, and the secret
    must not show anywhere."""
    secret = "s3cr3t-CANARY-91f2"
    monkeypatch.setenv("SH_CLIENT_ID", "client-CANARY-77")
    monkeypatch.setenv("SH_CLIENT_SECRET", secret)
    monkeypatch.setenv("GEOSTUDIO_HTTP_TIMEOUT", "2")
    for name in ("HTTPS_PROXY", "https_proxy"):  # one answer with or without a network: a proxy that is not there
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    run = run_engine("check", {"connector": "sentinelhub", "timeout_s": 2}, ws, timeout=60)
    assert run.returncode == EXIT_EXTERNAL, run.describe()
    assert run.error["code"] == "connector_refused"
    for text in (run.stdout, run.stderr):
        assert secret not in text and "client-CANARY-77" not in text


def test_connection_test_of_a_loopback_stac(stac, ws):
    summary = run_ok("check", {"connector": "sentinel_aws", "endpoint": stac.stac_url}, ws).result["summary"]
    assert summary["ok"] is True and summary["status"] == 200
    summary = run_ok("check", {"connector": "IBMResearchSTAC", "endpoint": stac.stac_url}, ws).result["summary"]
    assert summary["status"] == 200


def test_requests_for_unreachable_services_carry_the_credentials(monkeypatch):
    """Sentinel Hub, NASA and The Weather Company cannot be reached from here: check the requests we build."""
    sys.path.insert(0, str(REPO))
    from geostudio_plugin.engine.connectors.check import request_for

    monkeypatch.setenv("SH_CLIENT_ID", "id-1")
    monkeypatch.setenv("SH_CLIENT_SECRET", "secret-1")
    monkeypatch.setenv("NASA_EARTH_BEARER_TOKEN", "token-2")
    monkeypatch.setenv("THE_WEATHER_COMPANY_API_KEY", "key-3")
    sh = request_for("sentinelhub", "")
    assert sh["method"] == "POST" and sh["url"].endswith("/oauth/token") is False
    assert sh["url"] == "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"
    assert sh["data"] == {"grant_type": "client_credentials", "client_id": "id-1", "client_secret": "secret-1"}
    nasa = request_for("nasa_earthdata", "")
    assert nasa["headers"] == {"Authorization": "Bearer token-2"} and nasa["url"].endswith("/stac/LPCLOUD")
    twc = request_for("TheWeatherCompany", "")
    assert twc["params"]["apiKey"] == "key-3" and "forecast/daily" in twc["url"]


def test_users_add_collections_in_their_workspace(ws):
    (ws / "catalog").mkdir(parents=True)
    (ws / "catalog" / "collections.json").write_text(json.dumps({"collections": [{
        "connector": "sentinel_aws", "collection_name": "landsat-c2-l2", "modality_tag": "HLS_L30", "resolution_m": 30,
        "rgb_bands": ["red", "green", "blue"],
        "bands": [{"band_name": "red", "resolution": "30m"}, {"band_name": "green", "resolution": "30m"},
                  {"band_name": "blue", "resolution": "30m"}, {"band_name": "nir08", "resolution": "30m"}]}]}))
    aws = next(c for c in run_ok("catalog", None, ws).result["summary"]["connectors"] if c["id"] == "sentinel_aws")
    added = next(c for c in aws["collections"] if c["collection"] == "landsat-c2-l2")
    assert added["source"] == "workspace" and added["modality_tag"] == "HLS_L30"
    assert [b["RGB_band"] for b in added["bands"]] == ["R", "G", "B", None]
    (ws / "catalog" / "collections.json").write_text("[{\"connector\": \"sentinel_aws\"}]")
    run = run_engine("catalog", None, ws)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "catalog_file_invalid" and "collections.json" in run.error["message"]


def test_catalog_table_facts(ws):
    connectors = {c["id"]: c for c in run_ok("catalog", None, ws).result["summary"]["connectors"]}
    dem = next(c for c in connectors["sentinelhub"]["collections"] if c["collection"] == "dem")
    assert dem["resolution_m"] == 30  # Terrakit has null
    s2 = next(c for c in connectors["sentinel_aws"]["collections"] if c["collection"] == "sentinel-2-l2a")
    assert s2["cloud_mask_band"] == "SCL"
    twc = connectors["TheWeatherCompany"]["collections"][0]
    assert twc["modality_tag"] == "HLS_L30" and twc["description"].startswith("Daily weather forecast (not imagery)")
    assert connectors["sentinelhub"]["aliases"]["sentinel1_vv-vh"] == "s1_grd"


def test_endpoint_override_reaches_connectors_that_terrakit_creates_itself(stac):
    """download_data() builds its own DataConnector: the override must be in the class, not one instance."""
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "from geostudio_plugin.engine.connectors import access;"
            "access.apply_endpoint('sentinel_aws', sys.argv[2]); access.apply_endpoint('IBMResearchSTAC', sys.argv[2]);"
            "from terrakit import DataConnector; import os;"
            "print(DataConnector('sentinel_aws').connector.stac_url); print(os.environ['IBMRESEARCH_STAC_URL'])")
    out = subprocess.run([sys.executable, "-c", code, str(REPO), stac.stac_url], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [stac.stac_url, stac.stac_url.rstrip("/")]


def test_a_bbox_that_is_not_numbers_is_a_spec_error(stac, ws):
    run = run_engine("search", search_spec(stac, bbox=[None, 15.77, -88.15, 15.84]), ws)
    assert run.returncode == EXIT_INVALID_SPEC and "must hold 4 numbers" in run.error["message"]
