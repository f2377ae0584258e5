"""Train a rendered TerraTorch config in this process, reporting progress and metrics as events."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Optional

from lightning.pytorch.callbacks import Callback

from .. import protocol
from ..protocol import EngineError


class ProtocolCallback(Callback):
    """Lightning callback that turns training into ``progress`` and ``metric`` events."""

    def __init__(self, start: float, end: float, min_interval_s: float = 0.5) -> None:
        self.start, self.end = start, end
        self.min_interval_s = min_interval_s
        self._last = 0.0

    def _total_batches(self, trainer: Any) -> Optional[float]:
        per_epoch = trainer.num_training_batches
        if not per_epoch or math.isinf(per_epoch):
            return None
        return per_epoch * max(trainer.max_epochs or 1, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.monotonic()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        total = self._total_batches(trainer)
        done = trainer.current_epoch * trainer.num_training_batches + batch_idx + 1
        fraction = done / total if total else 0.0
        protocol.progress("train", self.start + (self.end - self.start) * fraction,
                          f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, "
                          f"batch {batch_idx + 1}/{trainer.num_training_batches}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
        epoch = trainer.current_epoch
        for name, value in sorted(trainer.callback_metrics.items()):
            if getattr(value, "numel", lambda: 1)() == 1:
                protocol.metric(name, float(value), epoch=epoch, step=trainer.global_step, stage=name.split("/")[0])
        fraction = (epoch + 1) / max(trainer.max_epochs or 1, 1)
        protocol.progress("train", self.start + (self.end - self.start) * fraction,
                          f"epoch {epoch + 1}/{trainer.max_epochs} done")


def fit(config_path: Path, start: float, end: float, run_test: bool) -> dict[str, Any]:
    """Run ``fit`` (and ``test`` on the best weights) like ``terratorch fit -c config.yaml`` would."""
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
    trainer.callbacks.append(ProtocolCallback(start, end))
    try:
        trainer.fit(cli.model, datamodule=cli.datamodule)
    except RuntimeError as exc:  # the usual user-fixable failures of a training run
        text = str(exc)
        if "out of memory" in text.lower():
            raise EngineError("training_out_of_memory", f"Training ran out of memory on {trainer.strategy.root_device}.",
                              "Lower data.batch_size, set data.crop_size, or pick a smaller backbone.") from None
        if "stack expects each tensor to be equal size" in text or "must match the size" in text:
            raise EngineError("training_data_error", f"The dataset's samples do not fit in one batch: {text[:300]}",
                              "Onboard with a chip_size so every sample has the same size, or set batch_size 1.") \
                from None
        raise
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
            "epochs_run": trainer.current_epoch, "device": str(trainer.strategy.root_device)}


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
