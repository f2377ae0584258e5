"""Training beyond one process: the DDP settings of a tune, and a self-contained folder for a cluster.

``trainer_settings`` completes the trainer dict the templates render (``strategy``, ``num_nodes``,
``limit_train_batches``) and refuses what cannot run: DDP is chosen by itself when ``devices`` or
``num_nodes`` is above 1 (the engine then trains one process per device, ``train.ddp_workers``).
``export`` writes what a cluster job needs (``train_options.export_cluster``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..protocol import EngineError, SpecError
from .spec import STRATEGIES, TrainOptions


LIGHTNING_STRATEGIES = {"auto": "auto", "ddp": "ddp_find_unused_parameters_true"}


def trainer_settings(options: TrainOptions, trainer: dict[str, Any], *, exporting: bool = False,
                     gpus_seen: int = 0) -> dict[str, Any]:
    """``trainer`` (accelerator, devices, precision) with the spec's strategy, nodes and batch limit, checked."""
    out = dict(trainer)
    devices = options.devices
    processes = (devices if out["accelerator"] in ("cpu", "gpu") else 1) * options.num_nodes
    strategy = options.strategy
    if out["accelerator"] == "mps" and devices > 1:
        raise SpecError("distributed_invalid", f"train_options.devices = {devices} with device mps: the Apple GPU "
                        "trains as one process.", "Set train_options.devices to 1, or use device cpu or cuda.")
    if options.num_nodes > 1 and not exporting:
        raise SpecError("distributed_invalid", f"train_options.num_nodes = {options.num_nodes}: the engine trains "
                        "on this machine only.", "Set train_options.num_nodes to 1, or export the tune for a cluster "
                        "(train_options.export_cluster) and run it there.")
    if out["accelerator"] == "gpu" and devices > 1 and not exporting and devices > gpus_seen:
        raise SpecError("distributed_invalid", f"train_options.devices = {devices} GPUs, but torch sees "
                        f"{gpus_seen}.", f"Set train_options.devices to at most {max(gpus_seen, 1)}.")
    if out["accelerator"] == "cpu" and devices > (os.cpu_count() or 1) and not exporting:
        raise SpecError("distributed_invalid", f"train_options.devices = {devices} CPU processes, but this machine "
                        f"has {os.cpu_count()} CPU cores.", f"Set train_options.devices to at most {os.cpu_count()}.")
    if processes > 1 and strategy == "auto":
        strategy = "ddp"  # Lightning's own choice for several devices, made here so the engine launches the ranks
    if strategy not in STRATEGIES:  # the spec's Literal already refuses others; kept for a hand-made TrainOptions
        raise SpecError("distributed_invalid", f"train_options.strategy = {strategy!r} is not allowed.",
                        "Use one of: " + ", ".join(STRATEGIES))
    # TerraTorch's models leave parameters out of the loss (a backbone's classifier head, an auxiliary head): DDP
    # must look for them after every step, or the second step fails ("parameters that were not used")
    out.update({"strategy": LIGHTNING_STRATEGIES[strategy], "num_nodes": options.num_nodes})
    if out["accelerator"] == "cpu":
        out["devices"] = devices  # CPU processes, one DDP rank each
    if exporting and out["accelerator"] == "gpu" and isinstance(out["devices"], list):
        out["devices"] = devices  # on the cluster: this many GPUs per node
    if options.limit_train_batches:
        limit = options.limit_train_batches
        out["limit_train_batches"] = int(limit) if limit > 1 else limit
    return out


# ------------------------------------------------------------------------------------------------ cluster export
TORCHRUN = """#!/usr/bin/env bash
# Train tune {tune_id} with torchrun: {devices} process(es) per node, {num_nodes} node(s).
# Several nodes: run this on each with NNODES, NODE_RANK (0..NNODES-1) and MASTER_ADDR (node 0's address).
# PYTHON: an interpreter with TerraTorch {terratorch} (and torch, lightning) installed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${{PYTHON:-python3}}"
NPROC_PER_NODE="${{NPROC_PER_NODE:-{devices}}}"
NNODES="${{NNODES:-{num_nodes}}}"
NODE_RANK="${{NODE_RANK:-0}}"
MASTER_ADDR="${{MASTER_ADDR:-127.0.0.1}}"
MASTER_PORT="${{MASTER_PORT:-29500}}"
exec "$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC_PER_NODE" --nnodes "$NNODES" \\
  --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \\
  -m terratorch fit -c config.yaml --trainer.devices "$NPROC_PER_NODE" --trainer.num_nodes "$NNODES" "$@"
"""

SLURM = """#!/usr/bin/env bash
#SBATCH --job-name=geostudio-{tune_id}
#SBATCH --nodes={num_nodes}
#SBATCH --ntasks-per-node={devices}
#SBATCH --cpus-per-task={cpus_per_task}
{gres}#SBATCH --time=04:00:00
#SBATCH --output=slurm-%j.out
# Submit from this folder: cd <this folder> && sbatch launch_slurm.sbatch
# srun starts one task per device on every node; Lightning reads SLURM's variables (SLURM_NTASKS, SLURM_PROCID,
# SLURM_LOCALID, SLURM_NODEID, SLURM_NODELIST) for the ranks and derives MASTER_ADDR/MASTER_PORT from the job.
# PYTHON: an interpreter with TerraTorch {terratorch} (and torch, lightning) installed on the compute nodes.
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-$(dirname "$0")}}"
PYTHON="${{PYTHON:-python3}}"
export HF_HUB_OFFLINE="${{HF_HUB_OFFLINE:-1}}"
srun "$PYTHON" -m terratorch fit -c config.yaml \\
  --trainer.devices "${{SLURM_NTASKS_PER_NODE:-{devices}}}" --trainer.num_nodes "${{SLURM_JOB_NUM_NODES:-{num_nodes}}}"
"""

README = """GeoStudio for QGIS: tune {tune_id} exported for a cluster
=============================================================

dataset {dataset_id} ({dataset_name}), backbone {backbone}, template {template}
{processes} training process(es): {devices} per node on {num_nodes} node(s), accelerator {accelerator},
strategy {strategy}, precision {precision}, {max_epochs} epoch(s); weights: {weights}.

  config.yaml            the TerraTorch config; every path in it is relative to this folder
  data/                  the dataset (images, labels, split files)
  launch_torchrun.sh     torchrun, one process per device (NPROC_PER_NODE, NNODES, NODE_RANK, MASTER_ADDR)
  launch_slurm.sbatch    SLURM: sbatch launch_slurm.sbatch (srun, {devices} task(s) per node, {num_nodes} node(s))
{weights_line}
Run it (an environment with TerraTorch {terratorch}, torch and lightning; set PYTHON to its python):
  cd <this folder> && PYTHON=/path/to/python ./launch_torchrun.sh      # one machine, or each node
  cd <this folder> && sbatch launch_slurm.sbatch                        # SLURM

Training writes checkpoints/ (best-state_dict-epoch=NN.ckpt: the model; best-epoch=NN.ckpt: full state),
config_deploy.yaml (the inference config), hparams.yaml and metrics.csv here.

Bring the model back: copy this folder (or just config_deploy.yaml and checkpoints/best-state_dict-*.ckpt,
the Studio's tune package) to the machine running QGIS and import it:
{bring_back}
"""


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(see engine-requirements.lock)"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # the dataset is never changed in place: a hard link is a copy
    except OSError:
        shutil.copy2(source, target)


def check_export_dir(value: str, workspace_root: Path) -> Path:
    """The export folder as an absolute path: new or empty, outside the workspace, its parent writable."""
    folder = Path(value).expanduser().absolute()
    hint = "Give a new folder outside the workspace, in a place you can write to."
    field = f"train_options.export_cluster = {value!r}"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise EngineError("export_path_unusable", f"{field}: {folder} exists and is not an empty folder.", hint)
    root = workspace_root.absolute()
    if folder == root or root in folder.parents:
        raise EngineError("export_path_unusable", f"{field}: {folder} is inside the workspace {root}.", hint)
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise EngineError("export_path_unusable", f"{field}: {parent or folder} is not a folder you can write to.",
                          hint)
    return folder


def _bring_back() -> str:
    from ..commands import COMMANDS

    imports = [name for name in COMMANDS if name in ("import-model", "model-import")]
    if imports:
        return (f"  scripts/engine {imports[0]} <spec naming the folder or a zip of it>   (see README, Model registry)\n"
                "or copy the folder into <workspace>/tunes/ as a tune.")
    return ("  put config_deploy.yaml and the best-state_dict checkpoint in a folder and import it as a model\n"
            "  (the Studio's completed-tune form), or run inference from them with terratorch predict.")


def export(folder: Path, *, record: dict[str, Any], template: dict[str, Any], dataset: dict[str, Any],
           dataset_dir: Path, backbone: dict[str, Any], params: dict[str, Any], trainer: dict[str, Any],
           seed: int, weights: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the cluster folder (built beside it and renamed into place); (outputs, summary) for the result."""
    from .. import protocol
    from .render import build_context, render

    part = folder.with_name(f".{folder.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    try:
        protocol.progress("export", 0.1, f"copying dataset {dataset['dataset_id']}")
        shutil.copytree(dataset_dir, part / "data", copy_function=_link_or_copy)
        weights_line = ""
        if getattr(weights, "origin", None) == "file" and weights.path:  # a local checkpoint travels along
            source = Path(weights.path)
            (part / "weights").mkdir()
            shutil.copy2(source, part / "weights" / source.name)
            relative = f"weights/{source.name}"
            kwargs = _replace_strings(weights.kwargs, str(source), relative)
            weights = dataclasses.replace(weights, path=relative, kwargs=kwargs)
            weights_line = f"  {relative:<22} the backbone's starting weights (a local checkpoint)\n"
        protocol.progress("export", 0.8, "rendering config.yaml and the launch scripts")
        context = build_context(tune_id=record["tune_id"], params=params, dataset=dataset, dataset_dir=Path("data"),
                                backbone=backbone, run_dir=Path("."), trainer=trainer, seed=seed, weights=weights)
        (part / "config.yaml").write_text(render(template, context))
        facts = {"tune_id": record["tune_id"], "devices": trainer["devices"] if isinstance(trainer["devices"], int)
                 else len(trainer["devices"]), "num_nodes": trainer.get("num_nodes", 1),
                 "terratorch": _version("terratorch")}
        gres = f"#SBATCH --gres=gpu:{facts['devices']}\n" if trainer["accelerator"] == "gpu" else ""
        scripts = {"launch_torchrun.sh": TORCHRUN.format(**facts),
                   "launch_slurm.sbatch": SLURM.format(**facts, gres=gres, cpus_per_task=4)}
        for name, text in scripts.items():
            (part / name).write_text(text)
            (part / name).chmod(0o755)
        weights_text = weights.origin if weights is not None else "random"
        if getattr(weights, "origin", None) == "hub_cache":
            weights_text += (f" ({weights.repo_id}/{weights.filename}: put it in the Hugging Face cache of the "
                             "compute nodes, or unset HF_HUB_OFFLINE there)")
        (part / "README.txt").write_text(README.format(
            **facts, dataset_id=dataset["dataset_id"], dataset_name=dataset["dataset_name"],
            backbone=backbone["name"], template=template.get("name", template["id"]),
            processes=facts["devices"] * facts["num_nodes"], accelerator=trainer["accelerator"],
            strategy=trainer.get("strategy", "auto"), precision=trainer["precision"],
            max_epochs=params["runner"]["max_epochs"], weights=weights_text, weights_line=weights_line,
            bring_back=_bring_back()))
        spec_record = {k: record[k] for k in ("tune_id", "name", "dataset_id", "base_model_id", "tune_template_id",
                                              "model_parameters", "train_options", "trainer") if k in record}
        (part / "tune_spec.json").write_text(json.dumps(spec_record, indent=1, default=str))
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():
            folder.rmdir()  # empty (checked before)
        os.replace(part, folder)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    protocol.progress("done", 1.0, f"tune {record['tune_id']} exported to {folder}")
    outputs = {"export_dir": str(folder), "config": str(folder / "config.yaml"),
               "launch_torchrun": str(folder / "launch_torchrun.sh"),
               "launch_slurm": str(folder / "launch_slurm.sbatch"), "readme": str(folder / "README.txt")}
    summary = {"tune_id": record["tune_id"], "status": "Exported", "export_dir": str(folder),
               "processes": facts["devices"] * facts["num_nodes"], "devices": facts["devices"],
               "num_nodes": facts["num_nodes"]}
    return outputs, summary


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {k: _replace_strings(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_strings(v, old, new) for v in value]
    return value
