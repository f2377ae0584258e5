"""Train a rendered TerraTorch config in this process, reporting progress and metrics as events.

``ProtocolCallback`` turns training into events (throttled per-step ``metric`` events with
stage ``step``, per-epoch ones with stage ``train``/``val``), keeps the per-epoch history and
saves a full ``last.ckpt`` (weights, optimizer, scheduler, loops, this history) when an epoch
is complete, so a cancelled or failed tune can be resumed from where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from lightning.pytorch.callbacks import Callback, Checkpoint

from .. import protocol
from ..protocol import EngineError

LAST_CHECKPOINT = "last.ckpt"
FILE_LOG = logging.getLogger("geostudio.tune")  # the tune's own log file only (tune.tune_log), not events
STEP_STAGE = "step"  # the stage of per-step metric events (per-epoch ones carry "train" or "val")
RANKS_DIR = "ranks"  # <run dir>/ranks/rank-<N>.json: what each DDP rank trained (written when world size > 1)
WORKER_ENV = "GEOSTUDIO_DDP_WORKER"  # set in the environment of the engine's DDP worker processes (rank > 0)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGTERM/SIGINT wait until the block is done (a checkpoint is never half-written), then act as they would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)  # raises protocol.Cancelled (the engine's handler)
            elif handler == signal.SIG_DFL:
                raise protocol.Cancelled(signal.Signals(pending[0]).name)


def _rewrite_paths(value: Any, old: str, new: str) -> Any:
    """Every string under ``value`` that starts with ``old`` starts with ``new`` instead (in place for dicts)."""
    if isinstance(value, str):
        return new + value[len(old):] if value.startswith(old) else value
    if isinstance(value, dict):  # keys too: ModelCheckpoint's best_k_models is {path: score}
        items = [(_rewrite_paths(k, old, new), _rewrite_paths(v, old, new)) for k, v in value.items()]
        value.clear()
        value.update(items)
        return value
    if isinstance(value, list):
        return [_rewrite_paths(v, old, new) for v in value]
    return value


def _between_epochs(fit_loop: dict[str, Any]) -> None:
    """A fit loop's saved state as at the very start of an epoch, before its batch loop has begun.

    ``last.ckpt`` is saved in ``on_train_epoch_start``, after the previous epoch's scheduler step; there the
    batch loop still holds the finished epoch's counters (its last batch), which Lightning would read back as
    "this epoch is done" and skip it. Zeroing the per-epoch ("current") counters, as Lightning does when an
    epoch starts, makes a resume train the epoch in full.
    """
    def zero_current(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "current" and isinstance(item, dict):
                    value[key] = {k: 0 for k in item}
                else:
                    zero_current(item)
            if "is_last_batch" in value:
                value["is_last_batch"] = False

    for key, value in fit_loop.items():
        if key.startswith("epoch_loop."):
            zero_current(value)
            if key.startswith("epoch_loop.val_loop.") and key.endswith("batch_progress") and "total" in value:
                value["total"] = {k: 0 for k in value["total"]}


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if name.startswith(prefix) and not name.endswith("_step") and getattr(value, "numel", lambda: 1)() == 1:
            number = float(value)
            if math.isfinite(number):
                out[name] = number
    return out


class ProtocolCallback(Checkpoint):
    """Lightning callback that turns training into ``progress`` and ``metric`` events, keeps the per-epoch
    history and saves ``last.ckpt`` at the start of every epoch after the first (the state after the previous
    epoch, its scheduler step included).

    A ``Checkpoint`` subclass so that Lightning calls its ``on_train_epoch_end`` after the LightningModule's
    own (where TerraTorch logs the epoch's train metrics), like ModelCheckpoint's.

    ``path_map`` = (the folder the run writes in, the folder the tune is kept in): paths inside the saved
    checkpoint name the kept folder, and are mapped back when resuming from it in another staging folder.
    """

    def __init__(self, start: float, end: float, min_interval_s: float = 0.5, last_path: Optional[Path] = None,
                 path_map: Optional[tuple[Path, Path]] = None,
                 on_saved: Optional[Callable[[int, list[dict[str, Any]]], None]] = None) -> None:
        self.start, self.end = start, end
        self.min_interval_s = min_interval_s
        self.last_path = last_path
        self.path_map = (str(path_map[0]), str(path_map[1])) if path_map else None
        self.on_saved = on_saved
        self._last = 0.0
        self.history: list[dict[str, Any]] = []  # one entry per completed epoch
        self.saved_history: list[dict[str, Any]] = []  # the history as ``last.ckpt`` holds it
        self.saved_epochs = 0  # completed epochs in ``last.ckpt`` (0: none saved)
        self._val: dict[str, float] = {}
        self._val_epoch = -1
        self._between_epochs = False

    # ---------------------------------------------------------------------------------- state in last.ckpt
    def state_dict(self) -> dict[str, Any]:
        return {"history": copy.deepcopy(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history") or [])
        self.saved_history = copy.deepcopy(self.history)
        self.saved_epochs = len(self.history)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:  # noqa: ANN001
        if self.path_map and "callbacks" in checkpoint:  # a copy: the states share objects with live callbacks
            checkpoint["callbacks"] = _rewrite_paths(copy.deepcopy(checkpoint["callbacks"]), *self.path_map)
        if self._between_epochs and isinstance(checkpoint.get("loops", {}).get("fit_loop"), dict):
            _between_epochs(checkpoint["loops"]["fit_loop"])

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:  # noqa: ANN001
        if self.path_map and "callbacks" in checkpoint:  # runs before any callback loads its state
            _rewrite_paths(checkpoint["callbacks"], self.path_map[1], self.path_map[0])

    # ------------------------------------------------------------------------------------------- events
    def _total_batches(self, trainer: Any) -> Optional[float]:
        per_epoch = trainer.num_training_batches
        if not per_epoch or math.isinf(per_epoch):
            return None
        return per_epoch * max(trainer.max_epochs or 1, 1)

    @staticmethod
    def _lr(trainer: Any) -> Optional[float]:
        try:
            return float(trainer.optimizers[0].param_groups[0]["lr"])
        except (IndexError, KeyError, TypeError, AttributeError):
            return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if not trainer.is_global_zero:  # only rank 0 speaks the protocol
            return
        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        epoch, step = trainer.current_epoch, trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and getattr(loss, "numel", lambda: 1)() == 1 and math.isfinite(float(loss)):
            protocol.metric("train/loss_step", float(loss), epoch=epoch, step=step, stage=STEP_STAGE)
        lr = self._lr(trainer)
        if lr is not None:
            protocol.metric("lr", lr, epoch=epoch, step=step, stage=STEP_STAGE)
        total = self._total_batches(trainer)
        done = epoch * trainer.num_training_batches + batch_idx + 1
        fraction = done / total if total else 0.0
        protocol.progress("train", self.start + (self.end - self.start) * fraction,
                          f"epoch {epoch + 1}/{trainer.max_epochs}, "
                          f"batch {batch_idx + 1}/{trainer.num_training_batches}")

    def on_validation_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        if trainer.sanity_checking:
            return
        self._val = _scalars(trainer.callback_metrics, "val/")
        self._val_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        epoch, step = trainer.current_epoch, trainer.global_step
        entry: dict[str, Any] = {"epoch": epoch, "step": step}
        lr = self._lr(trainer)
        if lr is not None:
            entry["lr"] = lr
        entry.update(_scalars(trainer.callback_metrics, "train/"))
        if self._val_epoch == epoch:  # validation ran in this epoch (check_val_every_n_epoch may skip it)
            entry.update(self._val)
        for name, value in sorted(entry.items()):
            if name not in ("epoch", "step"):
                protocol.metric(name, value, epoch=epoch, step=step, stage=name.split("/")[0] if "/" in name
                                else "train")
        self.history = [h for h in self.history if h.get("epoch") != epoch] + [entry]
        if not trainer.is_global_zero:
            return
        FILE_LOG.info("epoch %d/%s done: %s", epoch + 1, trainer.max_epochs,
                      ", ".join(f"{k}={v:.4g}" for k, v in sorted(entry.items()) if k not in ("epoch", "step")))
        fraction = (epoch + 1) / max(trainer.max_epochs or 1, 1)
        protocol.progress("train", self.start + (self.end - self.start) * fraction,
                          f"epoch {epoch + 1}/{trainer.max_epochs} done")

    # ------------------------------------------------------------------------------------------ last.ckpt
    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        if self.last_path is None or trainer.current_epoch == 0 or trainer.current_epoch <= self.saved_epochs:
            return  # nothing new since the last save (a resumed run starts where its checkpoint was saved)
        self.save_last(trainer)

    def save_last(self, trainer: Any) -> None:
        """``last.ckpt``: written whole and renamed into place; a SIGTERM meanwhile waits for it."""
        assert self.last_path is not None
        with deferred_signals():
            self.last_path.parent.mkdir(parents=True, exist_ok=True)
            part = self.last_path.with_name(self.last_path.name + ".part")
            self._between_epochs = True
            try:
                trainer.save_checkpoint(str(part))  # every rank calls it (a barrier); rank 0 writes the file
            finally:
                self._between_epochs = False
            if not trainer.is_global_zero:
                self.saved_epochs = trainer.current_epoch
                return
            os.replace(part, self.last_path)
            self.saved_epochs = trainer.current_epoch
            self.saved_history = copy.deepcopy(self.history)
            if self.on_saved is not None:
                self.on_saved(self.saved_epochs, self.saved_history)
        FILE_LOG.info("last checkpoint saved after epoch %d", self.saved_epochs)
        protocol.log(f"last checkpoint saved: {self.saved_epochs} of {trainer.max_epochs} epochs done "
                     "(a cancelled or failed tune resumes from here)")


OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def training_error(exc: BaseException, device: str) -> Optional[EngineError]:
    """The user-fixable failures of a training run as errors the user can act on; None for anything else."""
    text = str(exc)
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and any(t in text.lower() for t in OOM_TEXTS)):
        return EngineError("training_out_of_memory", f"Training ran out of memory on {device}: {text[:200]}",
                           "Lower data.batch_size, set data.crop_size, or pick a smaller backbone.")
    if isinstance(exc, RuntimeError) and ("stack expects each tensor to be equal size" in text
                                          or "must match the size" in text):
        return EngineError("training_data_error", f"The dataset's samples do not fit in one batch: {text[:300]}",
                           "Onboard with a chip_size so every sample has the same size, or set batch_size 1.")
    return None


class RankReport(Callback):
    """What one DDP rank trained, as ``<run dir>/ranks/rank-<N>.json`` (rank, world size, pid, batches per epoch)."""

    def __init__(self) -> None:
        self.batches: dict[int, int] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.batches[trainer.current_epoch] = self.batches.get(trainer.current_epoch, 0) + 1

    def on_train_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        folder = Path(trainer.default_root_dir) / RANKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        report = {"rank": trainer.global_rank, "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
                  "world_size": trainer.world_size, "pid": os.getpid(), "host": socket.gethostname(),
                  "strategy": type(trainer.strategy).__name__, "backend": getattr(trainer.strategy,
                                                                                  "_process_group_backend", None),
                  "batches": sum(self.batches.values()), "batches_per_epoch": self.batches}
        path = folder / f"rank-{trainer.global_rank}.json"
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(report, indent=1))
        os.replace(part, path)


def world_size(config_path: Path) -> int:
    """How many processes the rendered config trains with: devices x num_nodes (1 for a list of GPU indices)."""
    import yaml

    trainer = (yaml.safe_load(config_path.read_text()) or {}).get("trainer") or {}
    devices = trainer.get("devices", 1)
    count = len(devices) if isinstance(devices, list) else int(devices) if str(devices).isdigit() else 1
    return count * int(trainer.get("num_nodes") or 1)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK")


@contextlib.contextmanager
def ddp_workers(config_path: Path, processes: int, run_test: bool, resume: Optional[Path] = None,
                path_map: Optional[tuple[str, str]] = None, grace_s: float = 30.0) -> Iterator[list[subprocess.Popen]]:
    """Ranks 1..N-1 of a one-machine DDP run as worker processes of this engine; this process is rank 0.

    The engine launches the ranks itself instead of letting Lightning re-run the command line (its
    ``_SubprocessScriptLauncher`` would start ``python -m geostudio_plugin.engine tune spec.json`` again
    in every child: a second tune, staging folder, lock and result). The workers run only the rendered
    config (``python -m geostudio_plugin.engine.tuning.train CONFIG``), their output goes to this
    engine's stderr (the job's log) and never to the protocol. ``LOCAL_RANK`` in this process's
    environment tells Lightning the processes are created externally, as under torchrun.
    A worker that fails stops the others; one still running when this block is left is terminated.
    """
    saved = {name: os.environ.get(name) for name in DDP_ENV}
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(processes),
                       "NODE_RANK": "0", "LOCAL_RANK": "0"})
    args = [sys.executable, "-m", __name__, str(config_path)] + (["--test"] if run_test else []) \
        + (["--ckpt-path", str(resume)] if resume else []) + (["--path-map", *path_map] if path_map else [])
    procs: list[subprocess.Popen] = []
    failed = threading.Event()
    done = threading.Event()

    def watch() -> None:  # a worker that fails: stop the others (rank 0 then fails in its next collective)
        while not done.wait(1.0):
            if any(p.poll() not in (None, 0) for p in procs):
                failed.set()
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                if not done.wait(grace_s):  # rank 0 is stuck where no Python runs (a rendezvous): end it
                    protocol.EngineError("training_worker_failed", "A distributed training worker failed: "
                                         + ", ".join(f"pid {p.pid} exit {p.returncode}" for p in procs),
                                         "The reason is in the engine log (stderr).").emit()
                    os._exit(protocol.EXIT_INPUT)
                return

    try:
        for local_rank in range(1, processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank), WORKER_ENV: "1"}
            procs.append(subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=sys.__stderr__.fileno(),
                                          stderr=sys.__stderr__.fileno(), cwd=os.getcwd()))
        FILE_LOG.info("DDP: rank 0 is pid %d; workers %s (MASTER_PORT %s)", os.getpid(),
                      ", ".join(f"rank {i + 1} pid {p.pid}" for i, p in enumerate(procs)), os.environ["MASTER_PORT"])
        threading.Thread(target=watch, name="ddp-worker-watch", daemon=True).start()
        yield procs
        for p in procs:  # training is over on rank 0: the workers end with it
            p.wait(timeout=120)
        if failed.is_set() or any(p.returncode != 0 for p in procs):
            raise EngineError("training_worker_failed", "A distributed training worker failed: "
                              + ", ".join(f"pid {p.pid} exit {p.returncode}" for p in procs),
                              "The reason is in the engine log (stderr).")
    finally:
        done.set()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fit(config_path: Path, start: float, end: float, run_test: bool, *,
        callback: Optional[ProtocolCallback] = None, ckpt_path: Optional[Path] = None) -> dict[str, Any]:
    """Run ``fit`` (and ``test`` on the best weights) like ``terratorch fit -c config.yaml`` would.

    ``ckpt_path``: resume from this full checkpoint (weights, optimizer, scheduler, loops, history).
    A config of more than one process on this machine (``devices`` x ``num_nodes`` > 1) trains with DDP:
    this process is rank 0 and starts the other ranks (``ddp_workers``).
    """
    processes = world_size(config_path)
    if processes > 1 and not os.environ.get(WORKER_ENV):
        with ddp_workers(config_path, processes, run_test, ckpt_path, callback.path_map if callback else None):
            return _fit(config_path, start, end, run_test, callback=callback, ckpt_path=ckpt_path, ranks=True)
    return _fit(config_path, start, end, run_test, callback=callback, ckpt_path=ckpt_path, ranks=processes > 1)


def _fit(config_path: Path, start: float, end: float, run_test: bool, *, callback: Optional[ProtocolCallback],
         ckpt_path: Optional[Path], ranks: bool) -> dict[str, Any]:
    from terratorch.cli_tools import MyLightningCLI, MyTrainer, StudioDeploySaveConfigCallback
    from torchgeo.trainers import BaseTask

    try:
        cli = MyLightningCLI(
            model_class=BaseTask, subclass_mode_model=True, subclass_mode_data=True, seed_everything_default=0,
            save_config_callback=StudioDeploySaveConfigCallback, save_config_kwargs={"overwrite": True},
            args=["--config", str(config_path)], run=False, trainer_class=MyTrainer,
        )
    except SystemExit:  # jsonargparse reports a bad config on stderr, then exits
        raise EngineError("invalid_config", f"TerraTorch rejected the rendered config {config_path.name}.",
                          "The reason is in the engine log (stderr); check the template and parameters.") from None
    trainer = cli.trainer
    callback = callback or ProtocolCallback(start, end)
    trainer.callbacks.append(callback)  # after the template's checkpoint callbacks: its history is saved with it
    if ranks:
        trainer.callbacks.append(RankReport())
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except (RuntimeError, MemoryError) as exc:
        error = training_error(exc, str(trainer.strategy.root_device))
        if error is None:
            raise
        raise error from None
    checkpoint = trainer.checkpoint_callback
    best = Path(checkpoint.best_model_path) if checkpoint and checkpoint.best_model_path else None
    best_score = float(checkpoint.best_model_score) if checkpoint and checkpoint.best_model_score is not None else None
    test_metrics: dict[str, float] = {}
    if run_test and best is not None:
        if trainer.is_global_zero:
            protocol.progress("test", end, "evaluating the best weights on the test split")
        results = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(best), verbose=False)
        test_metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        for name, value in test_metrics.items():
            if trainer.is_global_zero:
                protocol.metric(name, value, stage="test")
    distributed = None
    if ranks and trainer.is_global_zero:
        folder = Path(trainer.default_root_dir) / RANKS_DIR
        distributed = {"world_size": trainer.world_size, "strategy": type(trainer.strategy).__name__,
                       "ranks": [json.loads(p.read_text()) for p in sorted(folder.glob("rank-*.json"))]}
    return {"distributed": distributed, "best_checkpoint": best, "best_val_loss": best_score, "test_metrics": test_metrics,
            "epochs_run": trainer.current_epoch, "device": str(trainer.strategy.root_device),
            "history": callback.history}


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """Lightning's CSVLogger rows, merged per epoch (train and val land on separate rows)."""
    if not path.is_file():
        return []
    per_epoch: dict[int, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            values = {k: float(v) for k, v in row.items()
                      if v not in ("", None) and k not in ("epoch", "step") and not k.startswith("test/")}
            if values:  # the test run logs its own row; its metrics are kept apart (test_metrics)
                epoch = int(float(row["epoch"]))
                per_epoch.setdefault(epoch, {"epoch": epoch}).update(values)
    return [per_epoch[e] for e in sorted(per_epoch)]


def worker_main(argv: Optional[list[str]] = None) -> int:
    """A DDP rank other than 0, started by ``ddp_workers``: train the config, say nothing on the protocol."""
    import argparse

    parser = argparse.ArgumentParser(prog="geostudio-ddp-worker")
    parser.add_argument("config", type=Path)
    parser.add_argument("--test", action="store_true")
    parser.add_argument("--ckpt-path", type=Path, default=None)
    parser.add_argument("--path-map", nargs=2, type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s rank {os.environ.get('LOCAL_RANK')} %(levelname)s %(name)s: %(message)s")
    protocol._stream = sys.stderr  # noqa: SLF001 - events of this process, were any emitted, go to the log
    _fit(args.config, 0.0, 1.0, args.test, callback=ProtocolCallback(0.0, 1.0, last_path=(
        args.config.parent / "checkpoints" / LAST_CHECKPOINT), path_map=args.path_map), ckpt_path=args.ckpt_path, ranks=True)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
