"""Inference: run a tuned model over GeoTIFFs and keep georeferenced predictions with their styles.

A run folder (``<workspace>/inferences/<inference_id>/``) holds one
``<input stem>_pred.tif`` per input (a COG; segmentation: uint8 label ids, nodata 255), its
``<input stem>_confidence.tif`` (top-class probability in percent, when asked) and ``inference.json``,
whose ``layers`` say how to show each output (the Studio's ``geoserver_push`` shape) and whose ``timings``
say where the time went (load_model_s, predict_s, write_cog_s). The run is built in the workspace's
staging folder and renamed into place only when complete: a cancel (SIGTERM) leaves no run.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from .. import protocol
from ..device import resolve_device
from ..protocol import EngineError, SpecError
from ..workspace import Workspace, now_iso, read_record, write_json
from .spec import InferSpec


def find_tune(workspace: Workspace, ref: str) -> tuple[dict[str, Any], Path]:
    folder = workspace.find("tunes", ref)
    if folder is None:  # a tune's display name works too
        matches = [t for t in workspace.list("tunes", "tune.json") if t.get("name") == ref]
        folder = workspace.find("tunes", str(matches[0].get("tune_id"))) if matches else None
    if folder is None or not (folder / "tune.json").is_file():
        known = [str(t["tune_id"]) for t in workspace.list("tunes", "tune.json") if t.get("tune_id")]
        raise SpecError("unknown_model", f"No tuned model '{ref}' in the workspace {workspace.root}.",
                        "Use fine_tuning_id with one of: " + (", ".join(known) or "(no tunes yet: fine-tune first)"))
    record = read_record(folder / "tune.json", f"tuned model {folder.name}", ("tune_id", "name", "status"))
    if record["status"] != "Finished":  # a dry run, a cancelled or failed tune has no model to run yet
        finished = [str(t["tune_id"]) for t in workspace.list("tunes", "tune.json") if t.get("status") == "Finished"]
        raise SpecError("model_not_ready", f"Tune {record['tune_id']} is {record['status']}: it has no finished "
                        "model to run.", ("Resume it in the Fine-tuning dock (a Cancelled or Failed tune), or use one "
                                          "of the finished tunes: " + (", ".join(finished) or "(none yet)")))
    required = ("tune_id", "name", "classes", "checkpoint", "deploy_config")
    return read_record(folder / "tune.json", f"tuned model {folder.name}", required), folder


def local_path(url: str) -> str:
    parsed = urlparse(url)
    path = unquote(parsed.path) if parsed.scheme == "file" else url
    if parsed.scheme not in ("", "file") and not (len(parsed.scheme) == 1 and url[1:3] in (":\\", ":/")):
        raise SpecError("remote_url", f"spatial_domain.urls entry {url} is not a local file.",
                        "Download it first, or give a local GeoTIFF path.")
    if not Path(path).is_file():
        raise EngineError("missing_input", f"Input raster {path} does not exist.", "Check the path in spatial_domain.urls.")
    return path


def layers_for(record: dict[str, Any], spec: InferSpec, outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to show, in the Studio's geoserver_push terms, with local file paths."""
    push = spec.geoserver_push or record.get("geoserver_push") or []
    style = next((p["geoserver_style"] for p in push if p.get("filepath_key", "").startswith("model_output")), None)
    display = next((p.get("display_name") for p in push if p.get("filepath_key", "").startswith("model_output")),
                   "Model prediction")
    layers = []
    for o in outputs:
        suffix = f": {Path(o['input']).stem}" if len(outputs) > 1 else ""
        if o.get("confidence"):  # below the prediction, off by default: where the model is sure (white) or not
            layers.append({"display_name": f"Confidence{suffix}", "path": o["confidence"],
                           "filepath_key": "model_output_confidence", "z_index": 0, "visible_by_default": False,
                           "geoserver_style": confidence_style(len(record.get("classes") or []))})
        layers.append({"display_name": f"{display}{suffix}", "path": o["prediction"],
                       "filepath_key": "model_output_image", "z_index": 1, "visible_by_default": True,
                       "geoserver_style": style})
    return layers


def run_record(inference_id: str, spec: InferSpec, record: dict[str, Any], device: str,
               outputs: list[dict[str, Any]], started: float,
               timings: Optional[dict[str, float]] = None) -> dict[str, Any]:
    """A completed run as inference.json keeps it (the Studio's inference record, with local paths)."""
    run = {
        "inference_id": inference_id, "created": now_iso(), "status": "COMPLETED",
        "tune_id": record["tune_id"], "model_display_name": spec.model_display_name or record["name"],
        "description": spec.description, "location": spec.location, "device": device,
        "spatial_domain": spec.spatial_domain.model_dump(), "temporal_domain": spec.temporal_domain,
        "classes": record["classes"], "outputs": outputs, "layers": layers_for(record, spec, outputs),
        "seconds": round(time.monotonic() - started, 2),
    }
    if timings is not None:
        run["timings"] = timings
    return run


def keep_run(stage: Path, run: dict[str, Any], target: Optional[Path]) -> None:
    """Write the run's record last: the first prediction is copied to ``output_path`` first (and taken back if
    the record cannot be written), so a run recorded as completed has every output in place."""
    made: Optional[list[Path]] = None  # output_path written (and the folders made for it)
    try:
        if target is not None:
            made = _copy_atomically(stage / Path(run["outputs"][0]["prediction"]).name, target)
        write_json(stage / "inference.json", run)
    except BaseException:
        if target is not None and made is not None:
            _remove(target, made)
        raise


def confidence_style(n_classes: int) -> dict[str, Any]:
    """A grey ramp over the confidence percent, in the Studio's regression-style shape: black at a coin toss
    between the classes (100 / n), white at 100."""
    low = 100 // max(n_classes, 2)
    return {"regression": [{"color": "#000000", "label": f"{low} %", "opacity": 1, "quantity": str(low)},
                           {"color": "#ffffff", "label": "100 %", "opacity": 1, "quantity": "100"}]}


def infer(spec: InferSpec, workspace: Workspace) -> dict[str, Any]:
    record, _ = find_tune(workspace, spec.model_ref())
    with workspace.lock("tunes", record["tune_id"]):  # delete refuses the model while it runs
        record, tune_dir = find_tune(workspace, record["tune_id"])  # still there now that it is locked
        return _infer(spec, workspace, record, tune_dir)


def check_areas(inputs: list[str], bbox: Optional[list[float]]) -> None:
    """The area must overlap every input (and each input needs a CRS to place it): said before the model loads."""
    if not bbox:
        return
    from ..rasters import open_raster
    from .predict import window_for_bbox

    for path in inputs:
        with open_raster(Path(path)) as src:
            window_for_bbox(src, bbox, path)


def _infer(spec: InferSpec, workspace: Workspace, record: dict[str, Any], tune_dir: Path) -> dict[str, Any]:
    started = time.monotonic()
    # area + dates stage (inference/area_inputs.py): plan and check availability now, fetch in the run folder
    from .area_inputs import AreaStage

    area = AreaStage.prepare(spec, workspace, record) if spec.is_area() else None
    inputs = [] if area else [local_path(u) for u in spec.spatial_domain.urls]
    bbox = spec.spatial_domain.bbox[0] if spec.spatial_domain.bbox and not area else None
    target = Path(spec.output_path).expanduser().absolute() if spec.output_path else None
    if target is not None:
        check_output_path(target)
    from .predict import check_tiling, read_deploy_config

    config = read_deploy_config(tune_dir, record)
    check_tiling((config.get("model") or {}).get("init_args", {}).get("tiled_inference_parameters") or {},
                 tune_dir / record["deploy_config"], record["tune_id"])  # before any work: stride 0 divides by 0
    if isinstance(config["data"].get("init_args", {}).get("means"), dict):  # multi-modal: one raster per modality
        return _infer_scenes(spec, workspace, record, tune_dir, config, inputs, bbox, target, started)
    from .bands import check_inputs
    from .predict import Preprocessing

    for warning in check_inputs(inputs, record, Preprocessing.from_deploy_config(config).bands):  # before loading
        protocol.log(warning, "warning")
    check_areas(inputs, bbox)
    protocol.progress("load", 0.02, f"loading model {record['tune_id']}")
    device = resolve_device(spec.device)
    from .model_cache import tune_model
    from .predict import Preprocessing, is_regression, stream_file

    prep = Preprocessing.from_deploy_config(config)  # normalisation, nodata and tiling as in training
    regression = is_regression(record, config)
    # built on first use: on a CPU a frozen model the tune's cache holds runs without importing TerraTorch
    model = tune_model(config, tune_dir, record, device)
    forward, optimise = model.forward, model.optimise  # traced (and cached) once, on the first large input
    timings: dict[str, float] = {}
    inference_id = workspace.new_id("inferences", spec.description or record["name"])
    outputs = []
    with workspace.staging("inferences", inference_id) as stage:  # a cancel or failure leaves nothing behind
        if area:  # area + dates stage: the fetched input files are what is predicted
            inputs = area.fetch(stage, inference_id)
        for n, path in enumerate(inputs):
            share = 0.9 / len(inputs)
            base = 0.05 + n * share
            protocol.progress("predict", base, f"{Path(path).name} ({n + 1}/{len(inputs)})")

            def on_tiles(fraction: float, base: float = base, share: float = share, name: str = Path(path).name) -> None:
                protocol.progress("predict", base + share * fraction * 0.95, f"{name}: {fraction:.0%} of tiles")

            stem = Path(path).stem
            if (stage / f"{stem}_pred.tif").exists():  # two inputs with one name (from different folders): keep both
                stem = f"{stem}_{n + 1}"
            output = stream_file(forward, record, prep, path, bbox, device, spec.batch_size, stage, stem,
                                 regression=regression, confidence=spec.confidence, block_size=spec.block_size,
                                 on_progress=on_tiles, optimise=optimise)
            final = workspace.dir("inferences") / inference_id
            output["prediction"] = str(final / Path(output["prediction"]).name)
            if "confidence" in output:
                output["confidence"] = str(final / Path(output["confidence"]).name)
            outputs.append(output)
        timings["load_model_s"] = round(model.load_seconds, 3)  # inside the first prediction: counted once
        timings["predict_s"] = round(max(sum(o["timings"]["predict_s"] for o in outputs) - model.load_seconds, 0), 3)
        timings["write_cog_s"] = round(sum(o["timings"]["cog_s"] for o in outputs), 3)
        run = run_record(inference_id, spec, record, device, outputs, started, timings)
        if area:  # area + dates stage: masked outputs and the per-date record
            run.update(area.finish(stage, workspace.dir("inferences") / inference_id, outputs, run["layers"]))
        keep_run(stage, run, target)
    protocol.progress("done", 1.0, f"{len(outputs)} prediction(s) written")
    return run


def _infer_scenes(spec: InferSpec, workspace: Workspace, record: dict[str, Any], tune_dir: Path,
                  config: dict[str, Any], inputs: list[str], bbox: Optional[list[float]], target: Optional[Path],
                  started: float) -> dict[str, Any]:
    """A multi-modal model: the inputs matched to its modalities by file suffix, one prediction per scene
    (``inference/modalities.py``); the run is recorded as ``_infer`` records it."""
    from .modalities import check_scene, match_scenes, modality_inputs

    modalities = modality_inputs(config, record)
    scenes = match_scenes(inputs, modalities, record)
    for _, scene in scenes:  # bands and grids from the headers, then the area: before the model loads
        for warning in check_scene(scene, modalities, record):
            protocol.log(warning, "warning")
    check_areas([path for _, scene in scenes for path in scene.values()], bbox)
    protocol.progress("load", 0.02, f"loading model {record['tune_id']}")
    device = resolve_device(spec.device)
    from ..rasters import write_geotiff
    from .modalities import predict_scene
    from .predict import load_task  # imports torch, TerraTorch

    task = load_task(config, tune_dir, record, device)
    tiles = dict(config["model"]["init_args"].get("tiled_inference_parameters") or {})
    inference_id = workspace.new_id("inferences", spec.description or record["name"])
    outputs = []
    with workspace.staging("inferences", inference_id) as stage:
        for n, (name, scene) in enumerate(scenes):
            share = 0.9 / len(scenes)
            base = 0.05 + n * share
            protocol.progress("predict", base, f"{name} ({n + 1}/{len(scenes)}: {', '.join(scene)})")

            def on_batch(fraction: float, base: float = base, share: float = share, name: str = name) -> None:
                protocol.progress("predict", base + share * fraction * 0.95, f"{name}: {fraction:.0%} of tiles")

            prediction, profile, counts = predict_scene(task, record, modalities, scene, bbox, device,
                                                        spec.batch_size, on_batch, tiles)
            out = stage / f"{name}_pred.tif"
            write_geotiff(out, prediction[None], profile)
            total = int(counts.sum())
            outputs.append({
                "input": next(iter(scene.values())), "inputs": scene,
                "prediction": str(workspace.dir("inferences") / inference_id / out.name),
                "width": prediction.shape[1], "height": prediction.shape[0],
                "class_pixels": {str(c["id"]): int(k) for c, k in zip(record["classes"], counts)},
                "class_fraction": {str(c["id"]): (int(k) / total if total else 0.0)
                                   for c, k in zip(record["classes"], counts)},
            })
        run = run_record(inference_id, spec, record, device, outputs, started)
        keep_run(stage, run, target)
    protocol.progress("done", 1.0, f"{len(outputs)} prediction(s) written")
    return run


def check_output_path(target: Path) -> None:
    """Refuse, before any work, an output_path that is a folder, lies under a file, or cannot be written."""
    def refuse(why: str, hint: str) -> EngineError:
        return EngineError("output_path_unusable", f"output_path {target} {why}.", hint)

    if target.is_dir():
        raise refuse("is an existing folder", f"Give a file path, such as {target / 'prediction.tif'}.")
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise refuse(f"cannot be created: {folder} is a file, not a folder", "Give a path in a folder.")
    probe = folder / f".geostudio-probe-{os.getpid()}-{secrets.token_hex(2)}"
    try:  # a real write: os.access says yes to root on a read-only file system
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        why = ("is on a read-only file system" if exc.errno == errno.EROFS
               else f"cannot be written: {folder}: {exc.strerror or exc}")
        raise refuse(why, "Choose a folder you can write to, or leave output_path empty "
                     "(the prediction stays in the workspace's inference run).") from None


def _copy_atomically(source: Path, target: Path) -> list[Path]:
    """Copy ``source`` to ``target`` (whole or not at all); returns the folders it had to create."""
    made = []
    folder = target.parent
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    tmp = target.with_name(f".{target.name}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(None, made)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return made


def _remove(target: Optional[Path], made: list[Path]) -> None:
    """Undo a copy to output_path: the file, then the folders made for it (deepest first, if empty)."""
    if target is not None:
        try:
            target.unlink()
        except FileNotFoundError:
            pass
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            pass


def run(spec: InferSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    run_record = infer(spec, workspace)
    folder = workspace.dir("inferences") / run_record["inference_id"]
    outputs = {"inference_dir": str(folder), "inference_json": str(folder / "inference.json"),
               "predictions": [o["prediction"] for o in run_record["outputs"]]}
    if spec.output_path:
        outputs["output_path"] = str(Path(spec.output_path).expanduser().absolute())
    return outputs, {
        "inference_id": run_record["inference_id"], "tune_id": run_record["tune_id"], "device": run_record["device"],
        "seconds": run_record["seconds"], "layers": run_record["layers"], "classes": run_record["classes"],
        "outputs": run_record["outputs"], **({"dates": run_record["dates"]} if "dates" in run_record else {})}
