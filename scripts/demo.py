"""`make demo`: the main job on the embedded sample data, end to end, on the CPU.

1. onboard the Sen1Floods11 Sentinel-1 water chips (6 events) as a dataset,
2. fine-tune a ResNet-18 UNet (random init) for a few epochs,
3. predict the held-out chip (USA_905409, never seen in training),
4. write a QGIS project (.qgz) with the input and the styled prediction in a group, and that map as the
   Inference dock's Export map writes it (A4 layout, PNG and PDF),
5. print where each output is, how long each step took, and the water IoU next to the majority baseline.

Runs under the QGIS Python (the engine steps go through the same door as the plugin: engine_client).
Outputs go to demo-output/ (override with GEOSTUDIO_DEMO_OUT); the demo's workspace is rebuilt each run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from geostudio_plugin.engine_client import JobOutcome, run_cli  # noqa: E402

SAMPLES = REPO / "resources" / "sample_data" / "sen1floods11"
HOLDOUT = SAMPLES / "holdout" / "USA_905409_S1Hand.tif"
HOLDOUT_LABEL = SAMPLES / "holdout" / "USA_905409_LabelHand.tif"
EPOCHS = int(os.environ.get("GEOSTUDIO_DEMO_EPOCHS", "8"))


def step(name: str, command: str, spec: dict, workspace: Path, timings: dict) -> JobOutcome:
    print(f"\n== {name}", flush=True)
    started = time.monotonic()
    outcome = run_cli(command, spec, workspace=workspace)
    timings[name] = time.monotonic() - started
    if not outcome.ok:
        message, hint, details = outcome.error_text()
        sys.exit(f"{name} failed: {message}\n{hint}\n{details}\nEngine log: {outcome.log_path}")
    print(f"   done in {timings[name]:.1f} s", flush=True)
    return outcome


def water_iou(prediction: Path, label: Path) -> tuple[float, float, list[int]]:
    """IoU of class 1 (water) over labelled pixels, for the model and for always predicting the majority class."""
    import numpy as np
    from osgeo import gdal

    pred = gdal.Open(str(prediction)).ReadAsArray()
    truth = gdal.Open(str(label)).ReadAsArray()
    valid = truth >= 0

    def iou(guess):
        inter = np.logical_and.reduce([guess == 1, truth == 1, valid]).sum()
        union = np.logical_and(np.logical_or(guess == 1, truth == 1), valid).sum()
        return float(inter / union) if union else 0.0

    majority = int(np.bincount(truth[valid].ravel()).argmax())
    return iou(pred), iou(np.full_like(truth, majority)), sorted(int(v) for v in np.unique(pred[valid]))


def build_project_and_map(prediction_summary: dict, out_dir: Path) -> tuple[Path, Path, Path]:
    """The QGIS project and the map a person would share, through the Inference dock's own Export map (an A4
    layout: prediction over the input, legend, scale bar, north arrow, title) as PNG and PDF."""
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    from geostudio_plugin import layers, map_export

    app = QgsApplication([], False)
    app.initQgis()
    project = QgsProject.instance()
    project.clear()
    group = layers.result_group("GeoStudio demo: Sen1Floods11 water", project)
    scene = QgsRasterLayer(str(HOLDOUT), "Sentinel-1 VV (USA_905409, 2019-05-22)")
    layers.grey_stretch(scene, band=1)
    layers.add_to_group(scene, group, project)
    predictions = []
    for spec in prediction_summary["layers"]:
        if spec.get("filepath_key") != "model_output_image":  # the map shows the water, not the confidence
            continue
        prediction = QgsRasterLayer(spec["path"], "Predicted water")
        layers.apply_style(prediction, spec["geoserver_style"])
        prediction.renderer().setOpacity(0.75)
        layers.add_to_group(prediction, group, project)
        predictions.append(prediction)
    project.setCrs(scene.crs())
    qgz = out_dir / "geostudio_demo.qgz"
    if not project.write(str(qgz)):
        sys.exit(f"could not write {qgz}")
    content = map_export.MapContent("demo-water on USA_905409 (Sen1Floods11 hold-out)", [*predictions, scene],
                                    predictions, subtitle="Sentinel-1, 2019-05-22; ResNet-18 UNet fine-tuned here")
    png, pdf = map_export.export_map(content, out_dir / "geostudio_demo.png", out_dir / "geostudio_demo.pdf",
                                     project=project)
    app.exitQgis()
    return qgz, png, pdf


def main() -> None:
    out_dir = Path(os.environ.get("GEOSTUDIO_DEMO_OUT", REPO / "demo-output")).resolve()
    workspace = out_dir / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    onboard_spec = json.loads((REPO / "scripts" / "demo_payloads" / "onboard_sen1floods11.json").read_text())
    onboard_spec["dataset_url"] = str(SAMPLES / "train")
    onboarded = step("1. onboard the sample dataset", "onboard", onboard_spec, workspace, timings)
    dataset = onboarded.result["summary"]
    print(f"   dataset {dataset['dataset_id']}: {dataset['n_samples']} chips of 256 px, split {dataset['splits']}")

    tune_spec = {
        "name": "demo-water", "description": "ResNet-18 UNet on Sen1Floods11 S1 chips",
        "dataset_id": dataset["dataset_id"], "base_model_id": "timm_resnet18",
        "tune_template_id": "timm_resnet : Segmentation",
        "model_parameters": {"runner": {"max_epochs": EPOCHS}, "data": {"batch_size": 4},
                             "optimizer": {"lr": 0.001, "type": "AdamW"}, "model": {"decode_head": {"channels": 64}}},
        "train_options": {"accelerator": "auto"},
    }
    tuned = step(f"2. fine-tune timm_resnet18 for {EPOCHS} epochs", "tune", tune_spec, workspace, timings)
    tune = tuned.result["summary"]
    print(f"   tune {tune['tune_id']} on {tune['device']}: best val/loss {tune['best_val_loss']:.3f}, "
          f"test mIoU {tune['test_metrics'].get('test/mIoU', float('nan')):.3f}")

    infer_spec = {"model_display_name": "demo-water", "fine_tuning_id": tune["tune_id"],
                  "description": "USA_905409 held-out chip", "location": "USA",
                  "spatial_domain": {"bbox": [], "urls": [str(HOLDOUT)]}, "temporal_domain": ["2019-05-22"],
                  "output_path": str(out_dir / "USA_905409_pred.tif")}
    inferred = step("3. predict the held-out chip", "infer", infer_spec, workspace, timings)
    prediction = Path(inferred.result["outputs"]["output_path"])

    print("\n== 4. QGIS project and map", flush=True)
    started = time.monotonic()
    qgz, png, pdf = build_project_and_map(inferred.result["summary"], out_dir)
    timings["4. QGIS project and map"] = time.monotonic() - started

    iou, baseline, classes = water_iou(prediction, HOLDOUT_LABEL)
    print("\nOutputs")
    print(f"  prediction GeoTIFF : {prediction}")
    print(f"  QGIS project       : {qgz}")
    print(f"  map (PNG, PDF)     : {png}, {pdf.name}")
    print(f"  workspace          : {workspace}")
    print("Timings")
    for name, seconds in timings.items():
        print(f"  {name:<40} {seconds:6.1f} s")
    print(f"  {'total':<40} {sum(timings.values()):6.1f} s")
    print("Held-out chip USA_905409 (labelled pixels)")
    print(f"  water IoU, fine-tuned model   : {iou:.3f}")
    print(f"  water IoU, majority baseline  : {baseline:.3f}")
    print(f"  classes in the prediction     : {classes}")
    if len(classes) < 2:
        sys.exit("The prediction holds a single class: the demo model did not learn.")


if __name__ == "__main__":
    main()
