"""Fine-tuning: render a template against a dataset and a backbone, train with TerraTorch, keep the package.

A tune folder (``<workspace>/tunes/<tune_id>/``) is the Studio's tune package
(``config_deploy.yaml`` + a state-dict checkpoint) plus ``config.yaml`` (the
full training config), ``metrics.csv`` and ``tune.json`` (what inference needs:
bands, statistics, classes and their styles).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import protocol
from ..catalog import find_backbone, find_template
from ..device import resolve_device, torch_devices, trainer_device
from ..protocol import EngineError, SpecError
from ..workspace import HOST, TUNE_LOG, Workspace, describe_job, now_iso, read_record, write_json
from .compatibility import check as check_compatibility
from .dataset_record import load_dataset
from .render import build_context, configured_epochs, merge_parameters, render
from .spec import TuneSpec
from .user_templates import check_tune as check_user_template
from .weights import resolve as resolve_weights

RESUMABLE = ("Cancelled", "Failed")  # statuses of a tune kept with its last checkpoint


def resolve_trainer(spec: TuneSpec) -> dict[str, Any]:
    """Lightning's accelerator, devices and precision for the spec's device (16-mixed on a GPU by default)."""
    from .cluster import trainer_settings  # devices, num_nodes, strategy (DDP) checked; the cluster's GPUs unchecked

    exporting = bool(spec.train_options.export_cluster)
    device = "cuda:0" if exporting and spec.device.startswith("cuda") else resolve_device(spec.device)
    trainer = trainer_device(device, spec.train_options.devices)
    precision = spec.train_options.precision or ("16-mixed" if trainer["accelerator"] == "gpu" else "32")
    gpus = torch_devices().cuda if trainer["accelerator"] == "gpu" and spec.train_options.devices > 1 else 0
    return trainer_settings(spec.train_options, {**trainer, "precision": precision}, exporting=exporting,
                            gpus_seen=gpus)


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
    template = find_template(spec.tune_template_id, workspace)  # a built-in, or a user template of the workspace
    backbone = find_backbone(spec.base_model_id)
    params = merge_parameters(template["model_params"], spec.model_parameters)
    (check_user_template if template.get("user_defined") else check_compatibility)(template, backbone, dataset, params)
    weights = resolve_weights(backbone["model_params"]["backbone"], spec.train_options.weights)
    resumed = load_resumable(workspace, spec, template, params) if spec.train_options.resume_from else None
    if resumed is not None:
        params = resumed["model_parameters"]
    protocol.progress("load", 0.03, "loading TerraTorch")
    trainer = resolve_trainer(spec)
    tune_id = resumed["tune_id"] if resumed else workspace.new_id("tunes", spec.name)
    final_dir = workspace.dir("tunes") / tune_id

    def context_for(run_dir: Path) -> dict[str, Any]:
        return build_context(tune_id=tune_id, params=params, dataset=dataset, dataset_dir=dataset_dir,
                             backbone=backbone, run_dir=run_dir, trainer=trainer, seed=spec.train_options.seed,
                             weights=weights)

    data_args = rendered_data_args(render(template, context_for(final_dir)))  # what the datamodule will apply
    record = {**base_record(spec, tune_id, dataset, backbone, template, params, trainer, data_args),
              "weights": weights.record()}
    if template.get("user_defined"):  # the Studio's mark of a tune from a user-defined template
        record["tune_type"] = record["train_options"]["tune_type"] = "user-defined"
    if spec.train_options.export_cluster:  # a self-contained folder for a cluster job; nothing is trained here
        from .cluster import check_export_dir, export

        folder = check_export_dir(spec.train_options.export_cluster, workspace.root)
        return {**record, "status": "Exported", "export": export(
            folder, record=record, template=template, dataset=dataset, dataset_dir=dataset_dir, backbone=backbone,
            params=params, trainer=trainer, seed=spec.train_options.seed, weights=weights)}
    if spec.train_options.dry_run:
        return _dry_run(workspace, record, template, context_for)
    if resumed is not None:
        record = {**resumed, "trainer": trainer, "status": "Running"}
        record.pop("error", None)
        record.pop("log_tail", None)
    from .train import LAST_CHECKPOINT, ProtocolCallback, fit  # imports torch, lightning, terratorch

    with workspace.building("tunes", tune_id, replace=resumed is not None) as build:
        stage = build.path
        last = stage / "checkpoints" / LAST_CHECKPOINT
        if resumed is not None:
            copy_for_resume(final_dir, stage)
        config_path = stage / "config.yaml"
        config_path.write_text(render(template, context_for(stage)))
        epochs = configured_epochs(config_path.read_text())
        if epochs is not None:  # what will run (a plain-YAML user template writes its own number)
            params.setdefault("runner", {})["max_epochs"] = epochs
        record.update({"created": record.get("created") or now_iso(), "pid": os.getpid(), "host": HOST,
                       "started": now_iso()})
        if resumed is not None:
            record["resumed"] = [*resumed.get("resumed", []), {"at_epoch": resumed.get("epochs_run", 0),
                                                               "started": now_iso()}]
        write_json(stage / "tune.json", record)
        seconds_before = float(record.get("seconds") or 0.0)

        def saved(epochs: int, history: list[dict[str, Any]]) -> None:  # a resumable state is on disk
            record.update({"epochs_run": epochs, "history": history,
                           "seconds": round(seconds_before + time.monotonic() - started, 1)})
            write_json(stage / "tune.json", record)

        callback = ProtocolCallback(0.1, 0.9, last_path=last, path_map=(stage, final_dir), on_saved=saved)
        planned = params["runner"]["max_epochs"]
        with tune_log(stage / TUNE_LOG):
            protocol.log(f"tune {tune_id}: {backbone['name']} on {dataset['dataset_id']} ({trainer['accelerator']}, "
                         f"precision {trainer['precision']}, {planned} epochs"
                         + (f", resumed after epoch {resumed.get('epochs_run', 0)})" if resumed else ")"))
            try:
                outcome = fit(config_path, start=0.1, end=0.9, run_test=bool(dataset["splits"].get("test")),
                              callback=callback, ckpt_path=last if resumed is not None else None)
                if outcome["best_checkpoint"] is None:
                    raise EngineError("no_checkpoint", "Training ended without saving a checkpoint.",
                                      "Check that the validation split is not empty and val/loss is logged.")
            except BaseException as exc:
                if not last.is_file():
                    raise  # nothing resumable: the staging folder goes, as before
                _ignore_signals()  # the cancel is under way: a second signal must not cut the record short
                status = "Cancelled" if isinstance(exc, protocol.Cancelled) else "Failed"
                error = exc if isinstance(exc, EngineError) else None
                if status == "Failed" and error is None:
                    logging.getLogger(TUNE_LOGGER).exception("training failed")
                    error = EngineError("internal_error", f"Training failed: {type(exc).__name__}: {exc}")
                keep_partial(build, record, callback, status, error, template, context_for, started, seconds_before)
                raise
        protocol.progress("save", 0.97, "writing the tune package")
        # the run used the staging folder; the kept config points at the final one
        config_path.write_text(render(template, context_for(final_dir)))
        last.unlink(missing_ok=True)  # the package keeps the best weights; the full training state is not needed
        record.update({
            "status": "Finished",
            "pid": None,
            "device": outcome["device"],
            "seconds": round(seconds_before + time.monotonic() - started, 1),
            "epochs_run": len(outcome["history"]),
            "best_val_loss": outcome["best_val_loss"],
            "test_metrics": outcome["test_metrics"],
            "history": outcome["history"],
            "checkpoint": str(outcome["best_checkpoint"].relative_to(stage)),
            "resumable": False,
        })
        if outcome.get("distributed"):  # a DDP run: what each rank trained (train.RankReport)
            record["distributed"] = outcome["distributed"]
        from .model_card import write_model_card  # the finished model's card: test evaluation, MODEL_CARD.md

        record["model_card"] = write_model_card(stage, record, dataset)
        write_json(stage / "tune.json", record)
    protocol.progress("done", 1.0, f"tune {tune_id} finished")
    return record


def rendered_data_args(text: str) -> dict[str, Any]:
    """``data.init_args`` of a rendered config (empty where a user template's config has none)."""
    import yaml

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}  # the tune itself reports a config that is not YAML
    data = config.get("data") if isinstance(config, dict) else None
    args = data.get("init_args") if isinstance(data, dict) else None
    return args if isinstance(args, dict) else {}


def base_record(spec: TuneSpec, tune_id: str, dataset: dict[str, Any], backbone: dict[str, Any],
                template: dict[str, Any], params: dict[str, Any], trainer: dict[str, Any],
                data_args: dict[str, Any]) -> dict[str, Any]:
    """What ``tune.json`` says of a tune before it has trained (what inference needs is here already).

    ``data_args``: the rendered config's ``data.init_args``, the preprocessing the datamodule applies (and so
    what ``config_deploy.yaml`` will say); ``model_input_data_spec`` describes every modality the model reads,
    ``data_spec`` is its first entry's view for single-modality readers."""
    from ..inference.input_spec import input_specs

    model_input_data_spec, data_spec = input_specs(data_args, dataset)
    return {
        "tune_id": tune_id,
        "name": spec.name,
        "description": spec.description,
        "status": "Running",
        "created": now_iso(),
        "dataset_id": dataset["dataset_id"],
        "dataset_name": dataset["dataset_name"],
        "purpose": dataset["purpose"],
        "base_model_id": backbone["name"],
        "tune_template_id": template["id"],
        "model_parameters": params,
        "train_options": spec.train_options.model_dump(),
        "trainer": trainer,
        "device": None,
        "seconds": 0.0,
        "epochs_run": 0,
        "best_val_loss": None,
        "test_metrics": {},
        "history": [],
        "checkpoint": None,
        "config": "config.yaml",
        "deploy_config": "config_deploy.yaml",
        "log": TUNE_LOG,
        "model_input_data_spec": model_input_data_spec,
        "data_spec": data_spec,
        "classes": dataset["classes"],
        "ignore_id": dataset["ignore_id"],
        "tiled_inference_parameters": params["model"]["tiled_inference_parameters"],
        "geoserver_push": spec.train_options.geoserver_push or geoserver_style(dataset["classes"]),
    }


def _dry_run(workspace: Workspace, record: dict[str, Any], template: dict[str, Any],
             context_for: Any) -> dict[str, Any]:
    """The full TerraTorch config, kept as a tune with status "DryRun" (config.yaml and tune.json, no weights)."""
    final_dir = workspace.dir("tunes") / record["tune_id"]
    text = render(template, context_for(final_dir))
    with workspace.building("tunes", record["tune_id"]) as build:
        (build.path / "config.yaml").write_text(text)
        record = {**record, "status": "DryRun", "deploy_config": None, "log": None}
        write_json(build.path / "tune.json", record)
    protocol.progress("done", 1.0, f"tune {record['tune_id']}: config rendered (dry run, nothing trained)")
    return {**record, "config_text": text}


def load_resumable(workspace: Workspace, spec: TuneSpec, template: dict[str, Any],
                   params: dict[str, Any]) -> dict[str, Any]:
    """The record of the tune ``train_options.resume_from`` names, if it can be resumed with this spec."""
    tune_id = str(spec.train_options.resume_from)
    folder = workspace.find("tunes", tune_id)
    if folder is None or not (folder / "tune.json").is_file():
        known = [str(t["tune_id"]) for t in workspace.list("tunes", "tune.json")
                 if t.get("status") in RESUMABLE and t.get("tune_id")]
        raise SpecError("unknown_model", f"train_options.resume_from: no tune '{tune_id}' in the workspace "
                        f"{workspace.root}.", "Resume one of: " + (", ".join(known) or "(no resumable tunes)"))
    record = read_record(folder / "tune.json", f"tune {tune_id}",
                         ("tune_id", "status", "dataset_id", "base_model_id", "tune_template_id", "model_parameters"))
    hint = "Resume a Cancelled or Failed tune that kept a checkpoint, or start a new tune."
    if record["status"] not in RESUMABLE:
        raise EngineError("not_resumable", f"Tune {tune_id} is {record['status']}; only a Cancelled or Failed tune "
                          "can be resumed.", hint)
    if not (folder / "checkpoints" / "last.ckpt").is_file():
        raise EngineError("not_resumable", f"Tune {tune_id} kept no last checkpoint (it stopped before its first "
                          "epoch ended).", hint)
    for field, value, own in (("dataset_id", spec.dataset_id, record["dataset_id"]),
                              ("base_model_id", spec.base_model_id, record["base_model_id"]),
                              ("tune_template_id", template["id"], record["tune_template_id"])):
        if value != own:
            raise EngineError("not_resumable", f"{field} is '{value}' but tune {tune_id} was trained with '{own}'.",
                              "Resume with the tune's own spec (contract.tune_resume_spec), or start a new tune.")
    if spec.model_parameters and params != record["model_parameters"]:
        raise EngineError("not_resumable", f"model_parameters differ from those tune {tune_id} was trained with.",
                          "Leave model_parameters out when resuming: the tune's own are used.")
    holders = workspace.holders("tunes", tune_id)
    if holders:
        raise EngineError("not_resumable", f"Tune {tune_id} is in use by {describe_job(holders[0])}.",
                          "Wait for that job to finish or cancel it.")
    return record


def copy_for_resume(source: Path, stage: Path) -> None:
    """The kept tune's files, into the staging folder the resumed run writes in (the kept one stays as it is)."""
    for path in source.rglob("*"):
        if path.is_file() and path.name != "tune.json":
            target = stage / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def keep_partial(build: Any, record: dict[str, Any], callback: Any, status: str, error: Any,
                 template: dict[str, Any], context_for: Any, started: float, seconds_before: float) -> None:
    """A tune stopped with a resumable state on disk is kept (status Cancelled or Failed) as its last checkpoint
    left it: the history up to that checkpoint, the best weights so far, the config pointing at the kept folder."""
    stage = build.path
    (stage / "config.yaml").write_text(render(template, context_for(build.final)))
    best = sorted((stage / "checkpoints").glob("best-*.ckpt"))
    record.update({
        "status": status,
        "pid": None,
        "epochs_run": callback.saved_epochs,
        "history": callback.saved_history,
        "seconds": round(seconds_before + time.monotonic() - started, 1),
        "checkpoint": str(best[-1].relative_to(stage)) if best else None,
        "last_checkpoint": "checkpoints/last.ckpt",
        "resumable": True,
        "stopped": now_iso(),
    })
    if error is not None:
        record["error"] = {k: v for k, v in error.fields().items() if k != "details"}
    write_json(stage / "tune.json", record)
    build.keep = True
    planned = record["model_parameters"]["runner"]["max_epochs"]
    protocol.emit("log", level="warning", message=f"tune {record['tune_id']} kept as {status} after "
                  f"{callback.saved_epochs} of {planned} epochs with its last checkpoint; resume it with "
                  f"train_options.resume_from", kept={"kind": "tunes", "id": record["tune_id"], "status": status,
                                                       "epochs_run": callback.saved_epochs, "planned_epochs": planned,
                                                       "path": str(build.final)})


def _ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)


TUNE_LOGGER = "geostudio.tune"


@contextmanager
def tune_log(path: Path) -> Iterator[None]:
    """The tune's own log file (appended to when resumed): Lightning's and the engine's messages, the training
    progress and a failure's traceback, so a tune whose engine died still has its log."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(), logging.getLogger("geostudio_plugin"), logging.getLogger("lightning.pytorch"),
               logging.getLogger(TUNE_LOGGER)]
    for logger in loggers:
        logger.addHandler(handler)
    own = logging.getLogger(TUNE_LOGGER)
    own.setLevel(logging.INFO)
    own.propagate = False
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


def run(spec: TuneSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = tune(spec, workspace)
    folder = workspace.dir("tunes") / record["tune_id"]
    if record["status"] == "Exported":
        return record["export"]
    if record["status"] == "DryRun":
        return ({"tune_dir": str(folder), "config": str(folder / "config.yaml")},
                {"tune_id": record["tune_id"], "status": "DryRun", "config_text": record["config_text"]})
    return ({"tune_dir": str(folder), "checkpoint": str(folder / record["checkpoint"]),
             "config": str(folder / "config.yaml"), "deploy_config": str(folder / "config_deploy.yaml")},
            {k: record[k] for k in ("tune_id", "status", "device", "seconds", "epochs_run", "best_val_loss",
                                    "test_metrics")} | {"resumed": bool(record.get("resumed"))})
