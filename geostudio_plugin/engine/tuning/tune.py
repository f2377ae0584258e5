"""Fine-tuning: render a template against a dataset and a backbone, train with TerraTorch, keep the package.

A tune folder (``<workspace>/tunes/<tune_id>/``) is the Studio's tune package
(``config_deploy.yaml`` + a state-dict checkpoint) plus ``config.yaml`` (the
full training config), ``metrics.csv`` and ``tune.json`` (what inference needs:
bands, statistics, classes and their styles).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import protocol
from ..catalog import find_backbone, find_template
from ..device import resolve_device, trainer_device
from ..protocol import EngineError, SpecError
from ..workspace import Workspace, now_iso, read_record, write_json
from .compatibility import check as check_compatibility
from .render import build_context, merge_parameters, render
from .spec import TuneSpec


def load_dataset(workspace: Workspace, dataset_id: str) -> tuple[dict[str, Any], Path]:
    folder = workspace.find("datasets", dataset_id)
    if folder is None or not (folder / "dataset.json").is_file():
        known = [str(d["dataset_id"]) for d in workspace.list("datasets", "dataset.json") if d.get("dataset_id")]
        raise SpecError("unknown_dataset", f"dataset_id '{dataset_id}' is not in the workspace {workspace.root}.",
                        "Onboard it first, or use one of: " + (", ".join(known) or "(no datasets yet)"))
    required = ("dataset_id", "dataset_name", "purpose", "modalities", "training_params", "data_sources", "splits",
                "classes", "ignore_id")
    return read_record(folder / "dataset.json", f"dataset {dataset_id}", required), folder


def resolve_trainer(spec: TuneSpec) -> dict[str, Any]:
    """Lightning's accelerator, devices and precision for the spec's device (16-mixed on a GPU by default)."""
    trainer = trainer_device(resolve_device(spec.device), spec.train_options.devices)
    precision = spec.train_options.precision or ("16-mixed" if trainer["accelerator"] == "gpu" else "32")
    return {**trainer, "precision": precision}


def geoserver_style(classes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Studio's ``geoserver_push`` for a prediction, generated from the label categories."""
    return [{
        "z_index": 1, "workspace": "geofm", "layer_name": "pred", "display_name": "Model prediction",
        "filepath_key": "model_output_image", "file_suffix": "", "visible_by_default": "True",
        "geoserver_style": {"segmentation": [
            {"color": c["color"], "label": c["name"], "opacity": c["opacity"], "quantity": str(c["id"])}
            for c in classes]},
    }]


def tune(spec: TuneSpec, workspace: Workspace) -> dict[str, Any]:
    with workspace.lock("datasets", spec.dataset_id):  # delete refuses the dataset while it trains
        return _tune(spec, workspace)


def _tune(spec: TuneSpec, workspace: Workspace) -> dict[str, Any]:
    started = time.monotonic()
    protocol.progress("prepare", 0.01, "checking dataset, template and backbone")
    dataset, dataset_dir = load_dataset(workspace, spec.dataset_id)
    template = find_template(spec.tune_template_id)
    backbone = find_backbone(spec.base_model_id)
    check_compatibility(template, backbone, dataset, merge_parameters(template["model_params"], spec.model_parameters))
    params = merge_parameters(template["model_params"], spec.model_parameters)
    protocol.progress("load", 0.03, "loading TerraTorch")
    trainer = resolve_trainer(spec)
    from .train import fit, read_metrics_csv  # imports torch, lightning, terratorch

    tune_id = workspace.new_id("tunes", spec.name)
    final_dir = workspace.dir("tunes") / tune_id

    def context_for(run_dir: Path) -> dict[str, Any]:
        return build_context(tune_id=tune_id, params=params, dataset=dataset, dataset_dir=dataset_dir,
                             backbone=backbone, run_dir=run_dir, trainer=trainer, seed=spec.train_options.seed)

    with workspace.staging("tunes", tune_id) as stage:
        config_path = stage / "config.yaml"
        config_path.write_text(render(template, context_for(stage)))
        protocol.log(f"tune {tune_id}: {backbone['name']} on {dataset['dataset_id']} ({trainer['accelerator']}, "
                     f"precision {trainer['precision']}, {params['runner']['max_epochs']} epochs)")
        outcome = fit(config_path, start=0.1, end=0.9, run_test=bool(dataset["splits"].get("test")))
        if outcome["best_checkpoint"] is None:
            raise EngineError("no_checkpoint", "Training ended without saving a checkpoint.",
                              "Check that the validation split is not empty and val/loss is logged.")
        protocol.progress("save", 0.97, "writing the tune package")
        # the run used the staging folder; the kept config points at the final one
        config_path.write_text(render(template, context_for(final_dir)))
        modality_tag = dataset["modalities"][0]
        modality = dataset["training_params"][modality_tag]
        history = read_metrics_csv(stage / "metrics.csv")
        record = {
            "tune_id": tune_id,
            "name": spec.name,
            "description": spec.description,
            "status": "Finished",
            "created": now_iso(),
            "dataset_id": dataset["dataset_id"],
            "dataset_name": dataset["dataset_name"],
            "purpose": dataset["purpose"],
            "base_model_id": backbone["name"],
            "tune_template_id": template["id"],
            "model_parameters": params,
            "train_options": spec.train_options.model_dump(),
            "trainer": trainer,
            "device": outcome["device"],
            "seconds": round(time.monotonic() - started, 1),
            "epochs_run": outcome["epochs_run"],
            "best_val_loss": outcome["best_val_loss"],
            "test_metrics": outcome["test_metrics"],
            "history": history,
            "checkpoint": str(outcome["best_checkpoint"].relative_to(stage)),
            "config": "config.yaml",
            "deploy_config": "config_deploy.yaml",
            "data_spec": {
                "modality_tag": modality_tag,
                "data_source": dataset["data_sources"][0],
                "bands": modality["bands"], "band_names": modality["band_names"],
                "band_count": modality["band_count"], "norm_means": modality["norm_means"],
                "norm_stds": modality["norm_stds"], "constant_scale": params["data"]["constant_multiply"],
                "nodata": modality["nodata"], "file_suffix": modality["file_suffix"],
            },
            "classes": dataset["classes"],
            "ignore_id": dataset["ignore_id"],
            "tiled_inference_parameters": params["model"]["tiled_inference_parameters"],
            "geoserver_push": spec.train_options.geoserver_push or geoserver_style(dataset["classes"]),
        }
        write_json(stage / "tune.json", record)
    protocol.progress("done", 1.0, f"tune {tune_id} finished")
    return record


def run(spec: TuneSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = tune(spec, workspace)
    folder = workspace.dir("tunes") / record["tune_id"]
    return ({"tune_dir": str(folder), "checkpoint": str(folder / record["checkpoint"]),
             "config": str(folder / "config.yaml"), "deploy_config": str(folder / "config_deploy.yaml")},
            {k: record[k] for k in ("tune_id", "device", "seconds", "epochs_run", "best_val_loss", "test_metrics")})
