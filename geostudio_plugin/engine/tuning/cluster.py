"""Training beyond one process: the DDP settings of a tune, and a self-contained folder for a cluster.

``trainer_settings`` completes the trainer dict the templates render (``strategy``, ``num_nodes``,
``limit_train_batches``) and refuses what cannot run: DDP is chosen by itself when ``devices`` or
``num_nodes`` is above 1 (the engine then trains one process per device, ``train.ddp_workers``).
``export`` writes what a cluster job needs (``train_options.export_cluster``).
"""

from __future__ import annotations

import os
from typing import Any

from ..protocol import SpecError
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
