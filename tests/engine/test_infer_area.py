"""Inference over an area and dates: the planner's rules (unit tests), then end to end against the loopback STAC
server (rustac + a Range file server serving the MARIDA Sentinel-2 patches, tests/support/local_stac.py).

The model is the cheapest real one whose input is the STAC collection's bands: the MARIDA patches onboarded
from the bundled files with the collection's band names (blue, green, red, nir), a tiny ResNet-18 tuned for
one epoch. The catalogue's SCL asset is derived from MARIDA's own cloud annotations (stac_data.py).
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.transform
from conftest import EXIT_INPUT, EXIT_INVALID_SPEC, REPO, run_engine, run_ok, tune_payload
from rasterio.warp import transform

from geostudio_plugin.engine.inference import masks, plan
from geostudio_plugin.engine.inference.availability import days_with_data, pick_date
from geostudio_plugin.engine.protocol import EngineError

sys.path.insert(0, str(REPO / "tests" / "support"))
from payloads import STAC_MODEL_BANDS, marida_stac_payload  # noqa: E402

CLOUDY = "2020-11-15"  # MARIDA S2_15-11-20_16PCC_22: 4967 pixels annotated as cloud
MODEL_BANDS = STAC_MODEL_BANDS
BOTH = [-88.19, 15.77, -88.15, 15.84]  # two 16PCC patches, 1.6 km apart, seen on 2018-08-30 and 2018-09-14
SOURCE_FILES = {"blue": "B02.tif", "green": "B03.tif", "red": "B04.tif", "nir": "B08.tif"}


# ------------------------------------------------------------------------------------------- planner


def test_dates_parse_days_and_ranges():
    today = date(2024, 8, 1)
    days = plan.parse_dates(["2024-07-25", "2024-07-25_2024-07-27", " 2024-07-30_2024-08-09"], today)
    assert [(d.start, d.end, d.is_range) for d in days] == [
        (date(2024, 7, 25), date(2024, 7, 25), False), (date(2024, 7, 25), date(2024, 7, 27), True),
        (date(2024, 7, 30), today, True)]  # a range running past today is cut at today
    for bad in ("2024-7-25x", "2024-07-27_2024-07-25", "2024-02-30", "yesterday"):
        with pytest.raises(ValueError, match="YYYY-MM-DD|before the start"):
            plan.parse_date_entry(bad)


def test_planner_refuses_a_future_date_naming_it_and_today():
    with pytest.raises(EngineError) as caught:
        plan.parse_dates(["2024-07-25", "2024-08-02"], date(2024, 8, 1))
    assert caught.value.code == "dates_in_future"
    assert "temporal_domain[1] '2024-08-02'" in caught.value.message and "2024-08-01" in caught.value.message


def test_area_limit_names_the_area_and_the_limit():
    one_degree = [10.0, 0.0, 11.0, 1.0]  # about 12,364 km² at the equator
    assert plan.area_sq_km(one_degree) == pytest.approx(12364, rel=0.01)
    assert plan.area_sq_km([10.0, 60.0, 11.0, 61.0]) == pytest.approx(12364 * 0.4924, rel=0.02)
    with pytest.raises(EngineError) as caught:
        plan.check_area([one_degree], 800)
    assert caught.value.code == "area_too_large"
    assert "12,36" in caught.value.message and "800.0 km²" in caught.value.message
    assert plan.check_area([[10.0, 0.0, 10.1, 0.1]], 800) == pytest.approx(123.6, rel=0.01)


def test_a_large_box_is_split_into_equal_sub_boxes_at_most_2400_px():
    box = [10.0, 0.0, 10.5, 0.3]  # 55.7 km x 33.4 km: 5566 x 3340 px at 10 m
    parts = plan.plan_boxes(box, 10)
    assert len(parts) == 3 * 2
    assert plan.union(parts) == pytest.approx(box)
    for part in parts:
        mx, my = plan.metres_per_degree(0.15)
        assert (part[2] - part[0]) * mx / 10 <= 2400 and (part[3] - part[1]) * my / 10 <= 2400
    assert sum(plan.area_sq_km(p) for p in parts) == pytest.approx(plan.area_sq_km(box))
    assert plan.plan_boxes(box, 30) == [pytest.approx(box)]  # 1855 px at 30 m: one box


def test_a_small_box_is_padded_around_its_centre_to_224_px():
    box = [-88.005, 15.0, -88.0, 15.001]  # 537 m x 111 m
    (padded,) = plan.plan_boxes(box, 10)
    mx, my = plan.metres_per_degree(15.0005)
    assert (padded[2] - padded[0]) * mx / 10 == pytest.approx(224, rel=1e-3)
    assert (padded[3] - padded[1]) * my / 10 == pytest.approx(224, rel=1e-3)
    assert (padded[0] + padded[2]) / 2 == pytest.approx(-88.0025)
    assert (padded[1] + padded[3]) / 2 == pytest.approx(15.0005)
    wide = [-88.1, 15.0, -88.0, 15.001]  # wide enough (1075 px): only its height is padded
    (part,) = plan.plan_boxes(wide, 10)
    assert part[0] == wide[0] and part[2] == wide[2] and part[3] - part[1] > 0.002


def test_polygons_become_their_bounding_box():
    polygon = {"type": "Polygon", "coordinates": [[[1, 2], [3, 2.5], [2, 4], [1, 2]]]}
    assert plan.geometry_bbox(polygon) == [1, 2, 3, 4]
    feature = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": polygon},
                                                         {"type": "Feature", "geometry": {"type": "Point",
                                                                                          "coordinates": [5, 1]}}]}
    assert plan.geometry_bbox(feature) == [1, 1, 5, 4]
    with pytest.raises(ValueError, match="no area"):
        plan.geometry_bbox({"type": "Point", "coordinates": [1, 2]})


def test_a_range_takes_its_clearest_day_then_the_latest():
    request = plan.parse_date_entry("2018-08-01_2018-09-30")
    scenes = [{"date": "2018-08-30", "cloud_cover": 1.0}, {"date": "2018-09-14", "cloud_cover": 1.0},
              {"date": "2018-09-20", "cloud_cover": 40.0}, {"date": "2018-10-02", "cloud_cover": 0.0}]
    assert pick_date(request, scenes) == "2018-09-14"
    assert pick_date(plan.parse_date_entry("2018-08-30"), scenes) == "2018-08-30"
    assert pick_date(plan.parse_date_entry("2018-07-01"), scenes) is None


def test_every_day_with_data_of_a_range_oldest_first():
    request = plan.parse_date_entry("2018-08-01_2018-09-30")
    scenes = [{"date": "2018-09-14", "cloud_cover": 1.0}, {"date": "2018-08-30", "cloud_cover": 1.0},
              {"date": "2018-09-14", "cloud_cover": 3.0}, {"date": "2018-10-02", "cloud_cover": 0.0}, {"date": ""}]
    assert days_with_data(request, scenes) == ["2018-08-30", "2018-09-14"]
    assert days_with_data(plan.parse_date_entry("2018-07-01_2018-07-31"), scenes) == []


def test_masks_write_studio_values_and_keep_nodata():
    prediction = np.array([[1, 2, 3, 255]], dtype="uint8")  # 255: the prediction's nodata
    scl = np.array([[9, 6, 11, 9]], dtype="float32")
    out, counts = masks.masked_prediction(prediction, 255, scl, np.ones_like(scl, bool), "sentinel2_scl",
                                          ["cloud", "snow_ice", "permanent_water"])
    assert out.dtype == np.int16 and out.tolist() == [[999, 997, 998, -9999]]
    assert counts == {"cloud": 1, "snow_ice": 1, "permanent_water": 1}
    only_cloud, _ = masks.masked_prediction(prediction, 255, scl, np.array([[False, True, True, True]]),
                                            "sentinel2_scl", ["cloud"])
    assert only_cloud.tolist() == [[1, 2, 3, -9999]]  # an invalid mask pixel masks nothing
    fmask = np.array([[2, 16, 32, 8]], dtype="float32")  # HLS Fmask bits 1 cloud, 4 snow, 5 water, 3 shadow
    hls, _ = masks.masked_prediction(np.array([[1, 1, 1, 1]], "int16"), -9999, fmask, np.ones((1, 4), bool),
                                     "hls_fmask", ["cloud", "snow_ice", "permanent_water"])
    assert hls.tolist() == [[999, 998, 997, 999]]


# ------------------------------------------------------------------------- end to end, loopback STAC


@pytest.fixture(scope="module")
def stac(tmp_path_factory):
    from local_stac import LocalStac

    with LocalStac(Path(sys.executable), tmp_path_factory.mktemp("localstac")) as server:
        yield server


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """MARIDA onboarded with the STAC collection's band names, a tiny ResNet-18 tuned for one epoch."""
    workspace = tmp_path_factory.mktemp("area") / "workspace"
    payload = marida_stac_payload()
    dataset_id = run_ok("onboard", payload, workspace).result["summary"]["dataset_id"]
    tune = run_ok("tune", tune_payload(dataset_id, name="marida-area"), workspace, timeout=600)
    return {"workspace": workspace, "tune_id": tune.result["summary"]["tune_id"]}


def scene(stac, day: str) -> tuple[str, dict]:
    return next((k, v) for k, v in stac.truth.items() if v["date"] == day and "folder" in v)


def area_spec(model, stac, bbox, dates, **extra) -> dict:
    return {"fine_tuning_id": model["tune_id"], "spatial_domain": {"bbox": [bbox]}, "temporal_domain": dates,
            "endpoints": {"sentinel_aws": stac.stac_url}, "device": "cpu", **extra}


def centre_box(truth: dict, half: float = 0.003) -> list[float]:
    west, south, east, north = truth["bbox"]
    x, y = (west + east) / 2, (south + north) / 2
    return [x - half, y - half, x + half, y + half]


def sample(path: Path, grid: rasterio.DatasetReader) -> tuple[np.ndarray, np.ndarray]:
    """The COG's values at the centres of ``grid``'s pixels, and which centres lie well inside a COG cell
    (nearest resampling may take either neighbour within 0.2 cell of an edge)."""
    with rasterio.open(path) as src:
        data = src.read(1).astype("float64")
        r, c = np.mgrid[0:grid.height, 0:grid.width]
        xs, ys = rasterio.transform.xy(grid.transform, r.ravel(), c.ravel())
        sx, sy = transform(grid.crs, src.crs, list(xs), list(ys))
        fc, fr = ~src.transform * (np.asarray(sx), np.asarray(sy))
    inside = (fr >= 0) & (fr < data.shape[0]) & (fc >= 0) & (fc < data.shape[1])
    central = inside & (np.abs(fr % 1 - 0.5) < 0.3) & (np.abs(fc % 1 - 0.5) < 0.3)
    values = np.full(fr.shape, np.nan)
    values[inside] = data[fr[inside].astype(int), fc[inside].astype(int)]
    return values.reshape(grid.height, grid.width), central.reshape(grid.height, grid.width)


def test_infer_over_an_area_fetches_predicts_and_masks(model, stac):
    item_id, truth = scene(stac, CLOUDY)
    bbox = centre_box(truth)
    spec = area_spec(model, stac, bbox, [CLOUDY],
                     post_processing={"cloud_masking": "True", "permanent_water_masking": True,
                                      "snow_ice_masking": "False"})
    run = run_ok("infer", spec, model["workspace"], timeout=300)
    folder = Path(run.result["outputs"]["inference_dir"])
    record = json.loads((folder / "inference.json").read_text())
    (entry,) = record["dates"]
    inference_id = record["inference_id"]
    assert entry["date"] == CLOUDY and [s["id"] for s in entry["scenes"]] == [item_id]
    fetched = Path(entry["inputs"]["S2L2A"])
    assert fetched.name == f"{inference_id}_S2L2A_{CLOUDY}.tif" and fetched.parent == folder
    for key in ("rgb", "prediction", "masked"):
        assert Path(entry[key]).is_file() and Path(entry[key]).parent == folder, key
    assert Path(entry["rgb"]).name == f"{inference_id}_S2L2A_{CLOUDY}_rgb.tif"
    assert record["outputs"][0]["input"] == str(fetched)
    # the padded area (224 px at 10 m) around the small bbox's centre
    with rasterio.open(fetched) as src:
        assert src.crs.to_epsg() == 4326 and src.count == 8 and src.nodata == -9999
        assert [src.descriptions[b["index"]] for b in MODEL_BANDS] == ["blue", "green", "red", "nir"]
        left, bottom, right, top = src.bounds
        assert left < bbox[0] - 0.005 and right > bbox[2] + 0.005 and 180 < src.width < 270
        # every model band equals the server's COG (DN x 0.0001 - 0.1) x the band's scaling_factor within 1e-3
        for band in MODEL_BANDS:
            cog = stac.root / "assets" / truth["folder"] / SOURCE_FILES[band["band_name"]]
            expected, central = sample(cog, src)
            data = src.read(band["index"] + 1).astype("float64")
            use = central & (data != src.nodata)
            assert use.sum() > 0.2 * data.size, band  # centres well inside a source cell: about a third
            errors = np.abs(data[use] - (expected[use] * 0.0001 - 0.1) * band["scaling_factor"])
            assert errors.max() < 1e-3, (band, float(errors.max()))
        assert (src.read(1) == -9999).all()  # a position the model does not read: nodata
        grid = (src.crs, src.transform, src.width, src.height)
    with rasterio.open(entry["prediction"]) as pred:
        assert (pred.crs, pred.transform, pred.width, pred.height) == grid
        classes = pred.read(1)
    with rasterio.open(entry["masked"]) as out:
        assert (out.crs, out.transform) == grid[:2] and out.dtypes[0] == "int16" and out.nodata == -9999
        masked = out.read(1)
        scl, central = sample(Path(truth["scl"]), out)
    cloud, water = np.isin(scl, (3, 8, 9)), scl == 6
    assert cloud[central].sum() > 100 and water[central].sum() > 0  # the scene has both, inside the area
    assert ((masked == 999) == cloud)[central].all()
    assert ((masked == 997) == (water & ~cloud))[central].all()
    clear = central & ~cloud & ~water
    assert np.array_equal(masked[clear], classes[clear].astype("int16"))
    assert entry["masks"]["cloud"] == int((masked == 999).sum())
    # the layers to load: input composite, raw prediction, masked prediction (its style names the mask values)
    shown = {layer["filepath_key"]: layer for layer in run.result["summary"]["layers"]}
    assert [shown[k]["path"] for k in ("model_input_original_image_rgb", "model_output_image",
                                       "model_output_image_masked")] == [entry["rgb"], entry["prediction"],
                                                                          entry["masked"]]
    quantities = {e["quantity"]: e["label"] for e in shown["model_output_image_masked"]["geoserver_style"][
        "segmentation"]}
    assert quantities["999"] == "cloud" and quantities["997"] == "permanent water" and "1" in quantities
    with rasterio.open(entry["rgb"]) as rgb:
        assert rgb.count == 3 and rgb.dtypes[0] == "uint8" and (rgb.crs, rgb.transform) == grid[:2]


def test_check_availability_lists_scenes_and_the_nearest_dates(model, stac):
    _, truth = scene(stac, "2018-09-14")
    spec = {"fine_tuning_id": model["tune_id"], "spatial_domain": {"bbox": [BOTH]},
            "temporal_domain": ["2018-09-14", "2018-09-01", "2018-08-01_2018-09-30"],
            "endpoints": {"sentinel_aws": stac.stac_url}}
    summary = run_ok("check-availability", spec, model["workspace"]).result["summary"]
    day, missing, window = summary["dates"]
    assert summary["maxcc"] == 80 and summary["available"] is False
    scenes = day["modalities"]["S2L2A"]["scenes"]
    assert day["date"] == "2018-09-14" and [s["id"] for s in scenes] == ["S2A_16PCC_20180914_30_L2A"]
    assert scenes[0]["cloud_cover"] == truth["cloud_cover"] and scenes[0]["datetime"].startswith("2018-09-14T16:05")
    assert missing["date"] is None and missing["nearest_dates"] == ["2018-08-30", "2018-09-14"]
    assert window["date"] == "2018-09-14"  # the range's clearest day (a tie: the later one)


def test_temporal_each_gives_every_day_with_data_of_a_range(model, stac):
    spec = {"fine_tuning_id": model["tune_id"], "spatial_domain": {"bbox": [BOTH]},
            "temporal_domain": ["2018-08-01_2018-09-30", "2018-09-14", "2018-07-01_2018-07-31"],
            "endpoints": {"sentinel_aws": stac.stac_url}, "temporal_each": True}
    summary = run_ok("check-availability", spec, model["workspace"]).result["summary"]
    assert [(e["request"], e["date"]) for e in summary["dates"]] == [
        ("2018-08-01_2018-09-30", "2018-08-30"), ("2018-08-01_2018-09-30", "2018-09-14"),
        ("2018-09-14", "2018-09-14"), ("2018-07-01_2018-07-31", None)]  # a range without data stays one entry
    first, second = summary["dates"][:2]
    assert [s["date"] for s in first["modalities"]["S2L2A"]["scenes"]] == ["2018-08-30"]
    assert [s["id"] for s in second["modalities"]["S2L2A"]["scenes"]] == ["S2A_16PCC_20180914_30_L2A"]
    assert summary["dates"][3]["nearest_dates"][:2] == ["2018-08-30", "2018-09-14"]
    assert summary["available"] is False


def test_a_date_without_data_names_the_nearest_dates(model, stac):
    run = run_engine("infer", area_spec(model, stac, BOTH, ["2018-09-01"]), model["workspace"])
    assert (run.returncode, run.error["code"]) == (EXIT_INPUT, "no_data"), run.describe()
    assert "2018-09-01: nearest dates with data 2018-08-30, 2018-09-14" in run.error["message"]


def test_an_area_outside_the_collection_is_said_so(model, stac):
    run = run_engine("infer", area_spec(model, stac, [10.0, 10.0, 10.01, 10.01], ["2018-09-14"]), model["workspace"])
    assert (run.returncode, run.error["code"]) == (EXIT_INPUT, "area_outside_coverage"), run.describe()
    assert "[10.0, 10.0, 10.01, 10.01]" in run.error["message"] and "sentinel-2-l2a" in run.error["message"]


def test_a_too_large_area_is_refused_before_anything_downloads(model, stac):
    before = (len(stac.stac_proxy.requests), len(stac.asset_proxy.requests))
    runs = model["workspace"] / "inferences"
    kept = sorted(runs.iterdir()) if runs.is_dir() else []
    run = run_engine("infer", area_spec(model, stac, [-88.5, 15.5, -88.0, 16.0], [CLOUDY]), model["workspace"])
    assert (run.returncode, run.error["code"]) == (EXIT_INVALID_SPEC, "area_too_large"), run.describe()
    assert "2,97" in run.error["message"] and "800.0 km²" in run.error["message"]
    assert (len(stac.stac_proxy.requests), len(stac.asset_proxy.requests)) == before
    assert (sorted(runs.iterdir()) if runs.is_dir() else []) == kept


def test_a_future_date_is_refused_naming_it_and_today(model, stac):
    _, truth = scene(stac, CLOUDY)
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    run = run_engine("infer", area_spec(model, stac, centre_box(truth), [CLOUDY, tomorrow]), model["workspace"])
    assert (run.returncode, run.error["code"]) == (EXIT_INVALID_SPEC, "dates_in_future"), run.describe()
    assert f"temporal_domain[1] '{tomorrow}'" in run.error["message"]
    assert date.today().isoformat() in run.error["message"]


def test_the_model_input_comes_from_the_spec_the_tune_or_its_dataset(tmp_path):
    from geostudio_plugin.engine.inference.availability import model_input_sources
    from geostudio_plugin.engine.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    source = {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
              "file_suffix": "_S2.tif", "bands": MODEL_BANDS}
    other = {**source, "modality_tag": "S1GRD", "connector": "sentinelhub", "collection": "s1_grd"}
    folder = workspace.dir("datasets") / "ds-1"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"data_sources": [other, source]}))
    record = {"tune_id": "t-1", "dataset_id": "ds-1", "data_spec": {"modality_tag": "S2L2A", "data_source": other}}
    # the dataset's data source of the tune's modality
    (found,) = model_input_sources(record, workspace)
    assert (found.connector, found.file_suffix, found.bands[3].scaling_factor) == ("sentinel_aws", "_S2.tif", 2.0)
    # the tune's own model_input_data_spec (the Studio's strings; file_suffix optional) wins over the dataset
    studio = {"connector": "sentinelhub", "collection": "s2_l2a", "modality_tag": "S2L2A",
              "bands": [{"index": "0", "band_name": "B04", "RGB_band": "R", "scaling_factor": "0.0001"}]}
    (found,) = model_input_sources({**record, "model_input_data_spec": [studio]}, workspace)
    assert (found.collection, found.file_suffix, found.bands[0].scaling_factor) == ("s2_l2a", ".tif", 0.0001)
    # the spec's wins over both; without the dataset, the tune record's own data source
    (found,) = model_input_sources(record, workspace, [found])
    assert found.collection == "s2_l2a"
    (found,) = model_input_sources({**record, "dataset_id": "gone"}, workspace)
    assert found.modality_tag == "S1GRD"
    with pytest.raises(EngineError) as caught:
        model_input_sources({"tune_id": "t-2", "data_spec": {"data_source": {**source, "connector": ""}}}, workspace)
    assert caught.value.code == "model_input_missing" and "S2L2A has no connector" in caught.value.message
