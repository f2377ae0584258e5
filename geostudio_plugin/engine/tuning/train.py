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
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from lightning.pytorch.callbacks import Checkpoint

from .. import protocol
from ..protocol import EngineError

LAST_CHECKPOINT = "last.ckpt"
FILE_LOG = logging.getLogger("geostudio.tune")  # the tune's own log file only (tune.tune_log), not events
STEP_STAGE = "step"  # the stage of per-step metric events (per-epoch ones carry "train" or "val")


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
                trainer.save_checkpoint(str(part))
            finally:
                self._between_epochs = False
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


def fit(config_path: Path, start: float, end: float, run_test: bool, *,
        callback: Optional[ProtocolCallback] = None, ckpt_path: Optional[Path] = None) -> dict[str, Any]:
    """Run ``fit`` (and ``test`` on the best weights) like ``terratorch fit -c config.yaml`` would.

    ``ckpt_path``: resume from this full checkpoint (weights, optimizer, scheduler, loops, history).
    """
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
        protocol.progress("test", end, "evaluating the best weights on the test split")
        results = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(best), verbose=False)
        test_metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        for name, value in test_metrics.items():
            protocol.metric(name, value, stage="test")
    return {"best_checkpoint": best, "best_val_loss": best_score, "test_metrics": test_metrics,
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
