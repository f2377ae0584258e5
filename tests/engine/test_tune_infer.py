"""``tune`` and ``infer`` with the session's one tiny model, ``list``, and cancelling a running tune."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from conftest import (EXIT_CANCELLED, EXIT_INPUT, EXIT_INVALID_SPEC, HOLDOUT_IMAGE, leftovers, run_and_cancel,
                      run_engine, run_ok, tune_payload)

PRED_NODATA = 255  # segmentation writes uint8 label ids; 255 where the input is no data


# ----------------------------------------------------------------------------------------------------- tune


def test_tune_package(trained):
    record, tune_dir, dataset = trained["tune"], trained["tune_dir"], trained["dataset"]
    assert tune_dir.parent == trained["workspace"].resolve() / "tunes"
    assert record["tune_id"] == tune_dir.name == trained["tune_run"].result["summary"]["tune_id"]
    assert record["status"] == "Finished"
    assert record["dataset_id"] == dataset["dataset_id"]
    assert record["base_model_id"] == "timm_resnet18" and record["tune_template_id"] == "timm_resnet_seg"
    assert record["model_parameters"]["runner"]["max_epochs"] == 1
    assert record["model_parameters"]["data"]["crop_size"] == 64
    assert record["trainer"]["accelerator"] == "cpu" and record["device"] == "cpu"
    # classes: the dataset's, with their styles
    assert [(c["index"], c["id"], c["name"]) for c in record["classes"]] == [(0, 0, "Not water"), (1, 1, "Water")]
    assert record["classes"] == dataset["classes"]
    # data_spec: what inference needs to normalise like training did
    spec, stats = record["data_spec"], dataset["training_params"]["S1GRD"]
    assert spec["modality_tag"] == "S1GRD"
    assert spec["bands"] == [0, 1] and spec["band_names"] == ["VV", "VH"] and spec["band_count"] == 2
    assert spec["norm_means"] == stats["norm_means"] and spec["norm_stds"] == stats["norm_stds"]
    assert len(spec["norm_means"]) == 2 and all(s > 0 for s in spec["norm_stds"])
    # the files of the package
    checkpoint = tune_dir / record["checkpoint"]
    assert checkpoint.is_file() and checkpoint.stat().st_size > 1_000_000
    assert Path(trained["tune_run"].result["outputs"]["checkpoint"]) == checkpoint
    assert (tune_dir / "config_deploy.yaml").is_file() and "class_path" in (tune_dir / "config_deploy.yaml").read_text()
    config = (tune_dir / "config.yaml").read_text()
    assert str(tune_dir) in config and "/.tmp/" not in config  # the kept config points at the final folder
    with (tune_dir / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and "val/loss" in rows[0]
    assert any(r["val/loss"] for r in rows)
    assert record["best_val_loss"] is not None and np.isfinite(record["best_val_loss"])
    assert leftovers(trained["workspace"]) == []
    # the engine ran with the session folder as its working directory and wrote nothing there
    strays = [p.name for p in trained["session_dir"].iterdir()
              if p.name != "workspace" and not (p.name.startswith("spec-") and p.suffix == ".json")]
    assert strays == []


def test_tune_unknown_dataset(tmp_path: Path):
    workspace = tmp_path / "ws"
    run = run_engine("tune", tune_payload("no-such-dataset"), workspace)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "unknown_dataset" and "no-such-dataset" in run.error["message"]
    assert leftovers(workspace, "tunes") == []


def test_tune_reports_metrics(trained):
    run = trained["tune_run"]
    metrics = run.of("metric")
    val_loss = [m for m in metrics if m["name"] == "val/loss"]
    assert val_loss, sorted({m["name"] for m in metrics})
    assert val_loss[0]["epoch"] == 0 and val_loss[0]["stage"] == "val"
    assert isinstance(val_loss[0]["value"], float) and np.isfinite(val_loss[0]["value"])
    assert any(m["name"] == "train/loss" for m in metrics)
    assert val_loss[-1]["value"] == pytest.approx(trained["tune"]["best_val_loss"])


def test_list_shows_dataset_and_tune(trained):
    run = run_ok("list", None, trained["workspace"])
    summary = run.result["summary"]
    assert [d["dataset_id"] for d in summary["datasets"]] == [trained["dataset"]["dataset_id"]]
    assert trained["tune"]["tune_id"] in [t["tune_id"] for t in summary["tunes"]]


# ---------------------------------------------------------------------------------------------------- infer


def _infer_spec(tune_id: str, **extra: Any) -> dict[str, Any]:
    spec = {"fine_tuning_id": tune_id, "spatial_domain": {"urls": [str(HOLDOUT_IMAGE)]}, "device": "cpu"}
    spatial = extra.pop("spatial_domain", {})
    spec["spatial_domain"].update(spatial)
    spec.update(extra)
    return spec


@pytest.fixture(scope="module")
def full_inference(trained, tmp_path_factory) -> dict[str, Any]:
    """The whole holdout chip, also copied to output_path."""
    target = tmp_path_factory.mktemp("out") / "nested" / "prediction.tif"
    run = run_ok("infer", _infer_spec(trained["tune"]["tune_id"], output_path=str(target)), trained["workspace"])
    return {"run": run, "output_path": target}


def test_infer_whole_raster(trained, full_inference):
    run = full_inference["run"]
    predictions = run.result["outputs"]["predictions"]
    assert len(predictions) == 1
    pred = Path(predictions[0])
    assert pred.name == "USA_905409_S1Hand_pred.tif"
    assert pred.parent.parent == trained["workspace"].resolve() / "inferences"
    assert (pred.parent / "inference.json").is_file()
    with rasterio.open(HOLDOUT_IMAGE) as src, rasterio.open(pred) as out:
        assert out.crs == src.crs
        assert out.transform.almost_equals(src.transform, precision=1e-12)
        assert (out.width, out.height) == (src.width, src.height) == (512, 512)
        assert out.count == 1 and out.dtypes[0] == "uint8" and out.descriptions == ("class_id",)
        assert out.nodata == PRED_NODATA
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        values = out.read(1)
        image = src.read()
    invalid = ~np.isfinite(image).all(axis=0)
    assert set(np.unique(values[~invalid]).tolist()) <= {0, 1}
    assert (values[invalid] == PRED_NODATA).all()
    (summary_output,) = run.result["summary"]["outputs"]
    counts = summary_output["class_pixels"]
    assert counts == {"0": int((values == 0).sum()), "1": int((values == 1).sum())}
    assert sum(counts.values()) == int((~invalid).sum())
    confidence, layer = run.result["summary"]["layers"]  # by z_index: the confidence below the prediction
    assert layer["path"] == str(pred) and layer["visible_by_default"]
    assert {s["quantity"] for s in layer["geoserver_style"]["segmentation"]} == {"0", "1"}
    assert confidence["path"] == summary_output["confidence"] and not confidence["visible_by_default"]
    assert [s["color"] for s in confidence["geoserver_style"]["regression"]] == ["#000000", "#ffffff"]
    timings = json.loads((pred.parent / "inference.json").read_text())["timings"]
    assert set(timings) == {"load_model_s", "predict_s", "write_cog_s"} and all(v >= 0 for v in timings.values())
    assert leftovers(trained["workspace"]) == []


def test_infer_output_path(full_inference):
    run, target = full_inference["run"], full_inference["output_path"]
    assert target.is_file()
    assert run.result["outputs"]["output_path"] == str(target)
    assert not list(target.parent.glob(".*.part"))
    with rasterio.open(target) as copy, rasterio.open(run.result["outputs"]["predictions"][0]) as pred:
        assert copy.crs == pred.crs and copy.transform == pred.transform
        np.testing.assert_array_equal(copy.read(), pred.read())


def test_infer_bbox_top_left_quarter_with_nodata(trained, tmp_path: Path):
    """A copy of the holdout with a NaN block in its top-left quarter, predicted inside a bbox of that quarter."""
    scene = tmp_path / HOLDOUT_IMAGE.name
    with rasterio.open(HOLDOUT_IMAGE) as src:
        data, profile = src.read(), src.profile.copy()
        left, bottom, right, top = src.bounds
        transform, crs = src.transform, src.crs
    assert np.isnan(profile["nodata"])
    data[:, 20:60, 30:90] = np.nan
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    bbox = [left, (bottom + top) / 2, (left + right) / 2, top]
    run = run_ok("infer", {"fine_tuning_id": trained["tune"]["tune_id"], "device": "cpu",
                           "spatial_domain": {"urls": [str(scene)], "bbox": [bbox]}}, trained["workspace"])
    (pred,) = run.result["outputs"]["predictions"]
    assert Path(pred).name == f"{scene.stem}_pred.tif"
    with rasterio.open(pred) as out:
        assert out.crs == crs
        assert abs(out.width - 256) <= 1 and abs(out.height - 256) <= 1, (out.width, out.height)
        assert out.transform.c == pytest.approx(transform.c, abs=1e-9)
        assert out.transform.f == pytest.approx(transform.f, abs=1e-9)
        assert out.transform.a == pytest.approx(transform.a) and out.transform.e == pytest.approx(transform.e)
        assert out.dtypes[0] == "uint8" and out.nodata == PRED_NODATA
        values = out.read(1)
    hole = np.zeros(values.shape, dtype=bool)
    hole[20:60, 30:90] = True
    assert (values[hole] == PRED_NODATA).all()
    assert set(np.unique(values[~hole]).tolist()) <= {0, 1}
    counts = run.result["summary"]["outputs"][0]["class_pixels"]
    assert sum(counts.values()) == int((~hole).sum())


def test_infer_bbox_outside_raster(trained):
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").iterdir())
    outside = [10.0, 10.0, 10.5, 10.5]  # the Gulf of Guinea; the holdout is in Kansas
    run = run_engine("infer", _infer_spec(trained["tune"]["tune_id"], spatial_domain={"bbox": [outside]}), workspace)
    assert run.returncode == EXIT_INPUT, run.describe()
    assert run.error["code"] == "bbox_outside"
    assert str(HOLDOUT_IMAGE) in run.error["message"]
    # said before the model loads (issue 10: the area check came after ~17 s of loading)
    assert not [e for e in run.events if e.get("event") == "progress" and e.get("stage") == "load"], run.events
    assert run.result is None
    assert sorted(p.name for p in (workspace / "inferences").iterdir()) == before
    assert leftovers(workspace) == []


def test_infer_unknown_model(trained):
    workspace = trained["workspace"]
    before = sorted(p.name for p in (workspace / "inferences").iterdir())
    run = run_engine("infer", _infer_spec("no-such-tune-123"), workspace)
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "unknown_model"
    assert "no-such-tune-123" in run.error["message"]
    assert trained["tune"]["tune_id"] in run.error["hint"]  # the hint lists the tunes that exist
    assert sorted(p.name for p in (workspace / "inferences").iterdir()) == before
    assert leftovers(workspace) == []


def test_infer_inverted_bbox_is_an_invalid_spec(trained):
    run = run_engine("infer", _infer_spec(trained["tune"]["tune_id"], spatial_domain={"bbox": [[10, 10, 9, 11]]}),
                     trained["workspace"])
    assert run.returncode == EXIT_INVALID_SPEC, run.describe()
    assert run.error["code"] == "invalid_spec"
    assert [d["field"] for d in run.error["details"]] == ["spatial_domain.bbox"]


def test_tune_json_is_strict_json(trained):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    json.loads((trained["tune_dir"] / "tune.json").read_text(), parse_constant=refuse)


# --------------------------------------------------------------------------------------------------- cancel


def test_cancel_running_tune(trained, tmp_path: Path):
    workspace = tmp_path / "ws"
    dataset_id = trained["dataset"]["dataset_id"]
    shutil.copytree(trained["dataset_dir"], workspace / "datasets" / dataset_id)
    spec = tmp_path / "tune.json"
    spec.write_text(json.dumps(tune_payload(dataset_id, max_epochs=50, name="cancel-me")))
    rc, events, group = run_and_cancel("tune", spec, workspace, lambda e: e["event"] == "progress"
                                       and e["stage"] == "train", tmp_path / "stderr.log")
    assert rc == EXIT_CANCELLED, (tmp_path / "stderr.log").read_text()[-3000:]
    with pytest.raises(ProcessLookupError):  # the engine and every process it started are gone
        os.killpg(group, 0)
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and errors[0]["code"] == "cancelled", errors
    assert not [e for e in events if e["event"] == "result"]
    assert list((workspace / "tunes").iterdir()) == []
    assert leftovers(workspace) == []
    assert (workspace / "datasets" / dataset_id / "dataset.json").is_file()  # inputs are untouched


def test_two_inputs_with_one_name_keep_both_predictions(trained, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        shutil.copy(HOLDOUT_IMAGE, folder / HOLDOUT_IMAGE.name)
    spec = {"fine_tuning_id": trained["tune"]["tune_id"], "device": "cpu",
            "spatial_domain": {"urls": [str(a / HOLDOUT_IMAGE.name), str(b / HOLDOUT_IMAGE.name)]}}
    predictions = run_ok("infer", spec, trained["workspace"]).result["outputs"]["predictions"]
    assert len(set(predictions)) == 2 and all(Path(p).is_file() for p in predictions)
