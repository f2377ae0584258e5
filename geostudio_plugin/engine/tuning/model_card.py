"""Model cards: what a finished tune is, for people (``MODEL_CARD.md``) and programs (``model_card.json``).

A card names the dataset, its modalities and bands with their scaling, the label categories with their
colours, the backbone, template and parameters, the per-class test metrics and the confusion matrix on the
test split (regression: RMSE, MAE and R² over the labelled test pixels), the training time, the device and
where the starting weights came from. ``tune.json`` stays what inference reads; its ``model_card`` field
names the card, which travels with an exported model.

The test evaluation runs Lightning's test loop once more on the best weights (the datamodule built from the
tune's ``config.yaml``, the task from ``config_deploy.yaml`` and the state-dict checkpoint) and counts the
very predictions and targets TerraTorch's test metrics are updated with, so the matrix and the metrics agree.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

from .. import protocol
from ..workspace import now_iso, write_json

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
CARD_VERSION = 1
_LOG = logging.getLogger("geostudio.tune")


# ------------------------------------------------------------------------------------------ test evaluation
class _Counter:
    """Counts what TerraTorch's test metrics see: (prediction, target) per batch, labelled pixels only."""

    def __init__(self, regression: bool, n_classes: int, ignore_index: Optional[int]) -> None:
        self.regression, self.n, self.ignore = regression, n_classes, ignore_index
        self.matrix = None  # torch int64 (n, n): rows true class index, columns predicted
        self.sums = [0, 0.0, 0.0, 0.0, 0.0]  # pixels, sum err², sum |err|, sum y, sum y²

    def update(self, preds: Any, target: Any) -> None:
        import torch

        preds, target = preds.detach(), target.detach()
        if self.regression:
            preds = preds.reshape(target.shape) if preds.numel() == target.numel() else preds
            valid = torch.isfinite(target) & torch.isfinite(preds)
            if self.ignore is not None:
                valid &= target != self.ignore
            y, p = target[valid].double(), preds[valid].double()
            err = p - y
            self.sums = [self.sums[0] + int(valid.sum()), self.sums[1] + float((err * err).sum()),
                         self.sums[2] + float(err.abs().sum()), self.sums[3] + float(y.sum()),
                         self.sums[4] + float((y * y).sum())]
            return
        target, preds = target.long(), preds.long()
        valid = (target >= 0) & (target < self.n)
        if self.ignore is not None:
            valid &= target != self.ignore
        counts = torch.bincount((target[valid] * self.n + preds[valid].clamp(0, self.n - 1)).cpu(),
                                minlength=self.n * self.n).reshape(self.n, self.n)
        self.matrix = counts if self.matrix is None else self.matrix + counts


def _collector(counter: _Counter) -> Any:
    from lightning.pytorch.callbacks import Callback

    class Collect(Callback):
        """Wraps the task's test metric collection's ``update`` for the test loop, then puts it back."""

        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            metrics = pl_module.test_metrics[0]
            original = metrics.update

            def update(preds: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
                counter.update(preds, target)
                return original(preds, target, *args, **kwargs)

            metrics.update = update
            self._restore = (metrics, original)

        def on_test_end(self, trainer: Any, pl_module: Any) -> None:
            metrics, _ = self._restore
            del metrics.update  # the instance attribute goes; the class's method is back

    return Collect()


def _datamodule(tune_dir: Path, record: dict[str, Any]) -> Any:
    """The tune's datamodule, built from its training config the way LightningCLI builds it."""
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningDataModule

    config = yaml.safe_load((tune_dir / (record.get("config") or "config.yaml")).read_text(encoding="utf-8"))
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    return parser.instantiate(parser.parse_object({"data": config["data"]})).data


def _leave_distributed() -> None:
    """After a DDP tune the card's test pass runs in rank 0 alone: without the process group and the rank variables
    a new Trainer (and the task's metrics) would wait for ranks that have already exited."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "MASTER_ADDR",
                 "MASTER_PORT"):
        os.environ.pop(name, None)


def evaluate_test(tune_dir: Path, record: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The confusion matrix (segmentation) or RMSE/MAE/R² (regression) of the best weights on the test split."""
    from lightning.pytorch import Trainer

    from ..device import trainer_device
    from ..inference.predict import load_task, read_deploy_config

    _leave_distributed()
    device = str(record.get("device") or "cpu")
    task = load_task(read_deploy_config(tune_dir, record), tune_dir, record, device)
    regression = record.get("purpose") == "Regression"
    ignore = task.hparams.get("ignore_index") if hasattr(task, "hparams") else None
    counter = _Counter(regression, len(record.get("classes") or []), ignore)
    trainer = Trainer(**trainer_device(device), precision=(record.get("trainer") or {}).get("precision", "32"),
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[_collector(counter)], default_root_dir=str(tune_dir))
    trainer.test(task, datamodule=_datamodule(tune_dir, record), verbose=False)
    if regression:
        n, sse, sae, sy, syy = counter.sums
        if not n:
            return None
        sst = syy - sy * sy / n
        return {"kind": "regression", "pixels": n, "rmse": math.sqrt(sse / n), "mae": sae / n,
                "r2": (1 - sse / sst) if sst > 0 else None}
    if counter.matrix is None:
        return None
    matrix = counter.matrix.tolist()
    return {"kind": "segmentation", "matrix": matrix, "pixels": int(sum(map(sum, matrix)))}


# ------------------------------------------------------------------------------------------------ the card
def _modalities(record: dict[str, Any], dataset: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every modality the model reads with its bands and their scaling (from ``model_input_data_spec``)."""
    spec = record.get("model_input_data_spec")
    if not spec:  # a record from before model_input_data_spec: its one data_spec
        spec = _legacy_spec(record, dataset)
    out = []
    for m in spec:
        means, stds = m.get("norm_means") or [], m.get("norm_stds") or []
        bands = [{"index": b.get("index"), "name": b.get("band_name"), "RGB_band": b.get("RGB_band"),
                  "mean": means[i] if i < len(means) else None, "std": stds[i] if i < len(stds) else None,
                  "scaling_factor": b.get("scaling_factor")} for i, b in enumerate(m.get("bands") or [])]
        out.append({"modality_tag": m.get("modality_tag"), "connector": m.get("connector"),
                    "collection": m.get("collection"), "file_suffix": m.get("file_suffix"), "nodata": m.get("nodata"),
                    "constant_scale": m.get("constant_scale"), "no_data_replace": m.get("no_data_replace"),
                    "bands": bands})
    return out


def _legacy_spec(record: dict[str, Any], dataset: Optional[dict[str, Any]]) -> list[dict[str, Any]]:
    """A ``model_input_data_spec`` entry rebuilt from an older record's ``data_spec``."""
    from ..inference.input_spec import modality_entry

    spec = record.get("data_spec") or {}
    if not spec:
        return []
    tag = spec.get("modality_tag")
    data_args = {"means": spec.get("norm_means") or [], "stds": spec.get("norm_stds") or [],
                 "constant_scale": spec.get("constant_scale"), "img_grep": spec.get("file_suffix"),
                 "dataset_bands": list(range(int(spec.get("band_count") or 0))), "output_bands": spec.get("bands")}
    source = dataset or {"data_sources": [spec["data_source"]] if spec.get("data_source") else [],
                         "training_params": {tag: spec}}
    return [modality_entry(data_args, tag, source)]


def _per_class(record: dict[str, Any], matrix: Optional[list[list[int]]]) -> list[dict[str, Any]]:
    reported = record.get("test_metrics") or {}
    rows = []
    for k, c in enumerate(record.get("classes") or []):
        suffix = f"_{c.get('name')}"
        entry: dict[str, Any] = {"index": c.get("index", k), "id": c.get("id"), "name": c.get("name"),
                                 "color": c.get("color")}
        entry["terratorch"] = {name.split("/", 1)[-1][: -len(suffix)]: value for name, value in reported.items()
                               if name.endswith(suffix)}
        if matrix is not None and k < len(matrix):
            tp = matrix[k][k]
            true = sum(matrix[k])
            predicted = sum(row[k] for row in matrix)
            union = true + predicted - tp

            def ratio(a: float, b: float) -> Optional[float]:
                return a / b if b else None

            precision, recall = ratio(tp, predicted), ratio(tp, true)
            entry.update({"pixels": true, "predicted_pixels": predicted, "iou": ratio(tp, union),
                          "precision": precision, "recall": recall,
                          "f1": ratio(2 * precision * recall, precision + recall) if precision and recall else
                          (0.0 if precision is not None and recall is not None else None)})
        rows.append(entry)
    return rows


def build_card(record: dict[str, Any], dataset: Optional[dict[str, Any]] = None,
               evaluation: Optional[dict[str, Any]] = None, note: str = "") -> dict[str, Any]:
    """The card of a tune record (``evaluation``: what ``evaluate_test`` found, None where it did not run)."""
    params = record.get("model_parameters") or {}
    classes = [{k: c.get(k) for k in ("index", "id", "name", "color", "opacity")} for c in record.get("classes") or []]
    test: dict[str, Any] = {"metrics": record.get("test_metrics") or {}}
    matrix = evaluation.get("matrix") if evaluation and evaluation.get("kind") == "segmentation" else None
    if record.get("purpose") != "Regression":
        test["per_class"] = _per_class(record, matrix)
        test["confusion_matrix"] = None if matrix is None else {
            "rows": "true class", "columns": "predicted class", "ids": [c["id"] for c in classes],
            "names": [c["name"] for c in classes], "matrix": matrix, "labelled_pixels": evaluation["pixels"]}
    elif evaluation and evaluation.get("kind") == "regression":
        test["regression"] = {k: evaluation[k] for k in ("pixels", "rmse", "mae", "r2")}
    if evaluation is None:
        test["note"] = note or "not evaluated on a test split"
    return {
        "card_version": CARD_VERSION,
        "generated": now_iso(),
        "tune_id": record.get("tune_id"), "name": record.get("name"), "description": record.get("description"),
        "purpose": record.get("purpose"), "status": record.get("status"), "created": record.get("created"),
        "dataset": {"dataset_id": record.get("dataset_id"), "dataset_name": record.get("dataset_name")},
        "modalities": _modalities(record, dataset),
        "classes": classes, "ignore_id": record.get("ignore_id"),
        "backbone": record.get("base_model_id"), "template": record.get("tune_template_id"),
        "parameters": params,
        "training": {"epochs_run": record.get("epochs_run"),
                     "planned_epochs": (params.get("runner") or {}).get("max_epochs"),
                     "seconds": record.get("seconds"), "device": record.get("device"),
                     "trainer": record.get("trainer"), "best_val_loss": record.get("best_val_loss"),
                     "resumed": len(record.get("resumed") or [])},
        "weights": record.get("weights") or {"origin": "unknown"},
        "test": test,
        "files": {"checkpoint": record.get("checkpoint"), "deploy_config": record.get("deploy_config"),
                  "config": record.get("config")},
        **({"imported_from": record["imported_from"]} if record.get("imported_from") else {}),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(card: dict[str, Any]) -> str:
    """``MODEL_CARD.md``: the card for people."""
    lines = [f"# Model card: {card.get('name')} (`{card.get('tune_id')}`)", ""]
    if card.get("description"):
        lines += [str(card["description"]), ""]
    training = card.get("training") or {}
    lines += ["| | |", "|---|---|",
              f"| Purpose | {_fmt(card.get('purpose'))} |",
              f"| Dataset | {_fmt((card.get('dataset') or {}).get('dataset_name'))} "
              f"(`{_fmt((card.get('dataset') or {}).get('dataset_id'))}`) |",
              f"| Backbone | `{_fmt(card.get('backbone'))}` |", f"| Template | `{_fmt(card.get('template'))}` |",
              f"| Weights | {_fmt((card.get('weights') or {}).get('origin'))} |",
              f"| Epochs | {_fmt(training.get('epochs_run'))} of {_fmt(training.get('planned_epochs'))} |",
              f"| Training time | {_fmt(training.get('seconds'))} s |", f"| Device | {_fmt(training.get('device'))} |",
              f"| Best validation loss | {_fmt(training.get('best_val_loss'))} |", ""]
    if card.get("imported_from"):
        source = card["imported_from"]
        lines += [f"Imported ({source.get('form')}) from `{source.get('path')}` on {source.get('imported')}."]
        lines += [f"- {n}" for n in source.get("notes") or []] + [""]
    modalities = card.get("modalities") or []
    lines += ["## Input bands", ""]
    if len(modalities) > 1:
        lines += [f"The model reads {len(modalities)} modalities, one raster each, in this order: "
                  + ", ".join(f"`{_fmt(m.get('modality_tag'))}`" for m in modalities) + ".", ""]
    for m in modalities:
        lines += [f"Modality `{_fmt(m.get('modality_tag'))}` ({_fmt(m.get('connector'))} / "
                  f"{_fmt(m.get('collection'))}), files `{_fmt(m.get('file_suffix'))}`, "
                  f"nodata {_fmt(m.get('nodata'))} (replaced by {_fmt(m.get('no_data_replace'))}), "
                  f"constant scale {_fmt(m.get('constant_scale'))}:", "",
                  "| band (0-based) | name | RGB | mean | std | scaling factor |", "|---|---|---|---|---|---|"]
        lines += [f"| {_fmt(b.get('index'))} | {_fmt(b.get('name'))} | {_fmt(b.get('RGB_band'))} | "
                  f"{_fmt(b.get('mean'))} | {_fmt(b.get('std'))} | {_fmt(b.get('scaling_factor'))} |"
                  for b in m.get("bands") or []]
        lines += [""]
    test = card.get("test") or {}
    if card.get("classes"):
        lines += ["## Label categories", "", f"Ignored label value: {_fmt(card.get('ignore_id'))}", "",
                  "| index | id | name | colour | opacity |", "|---|---|---|---|---|"]
        lines += [f"| {_fmt(c.get('index'))} | {_fmt(c.get('id'))} | {_fmt(c.get('name'))} | `{_fmt(c.get('color'))}` | "
                  f"{_fmt(c.get('opacity'))} |" for c in card["classes"]] + [""]
    lines += ["## Test results", ""]
    if test.get("note"):
        lines += [f"_{test['note']}_", ""]
    if test.get("per_class") and any("iou" in c for c in test["per_class"]):
        lines += ["| class | pixels | IoU | precision | recall | F1 |", "|---|---|---|---|---|---|"]
        lines += [f"| {_fmt(c.get('name'))} | {_fmt(c.get('pixels'))} | {_fmt(c.get('iou'))} | "
                  f"{_fmt(c.get('precision'))} | {_fmt(c.get('recall'))} | {_fmt(c.get('f1'))} |"
                  for c in test["per_class"]] + [""]
    confusion = test.get("confusion_matrix")
    if confusion:
        lines += [f"Confusion matrix (rows: true class, columns: predicted; {confusion['labelled_pixels']} labelled "
                  "test pixels):", "", "| true \\ predicted | " + " | ".join(map(str, confusion["names"])) + " |",
                  "|---|" + "---|" * len(confusion["names"])]
        lines += [f"| {name} | " + " | ".join(map(str, row)) + " |"
                  for name, row in zip(confusion["names"], confusion["matrix"])] + [""]
    if test.get("regression"):
        r = test["regression"]
        lines += [f"Over {r['pixels']} labelled test pixels: RMSE {_fmt(r['rmse'])}, MAE {_fmt(r['mae'])}, "
                  f"R² {_fmt(r['r2'])}.", ""]
    if test.get("metrics"):
        lines += ["TerraTorch's test metrics:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(test["metrics"].items())] + [""]
    lines += ["## Parameters", "", "```json"]
    import json

    lines += [json.dumps(card.get("parameters") or {}, indent=2), "```", ""]
    return "\n".join(lines)


def write_card(folder: Path, card: dict[str, Any]) -> str:
    write_json(folder / CARD_JSON, card)
    (folder / CARD_MD).write_text(markdown(card), encoding="utf-8")
    return CARD_JSON


def write_model_card(tune_dir: Path, record: dict[str, Any], dataset: Optional[dict[str, Any]] = None) -> str:
    """Called by ``tune`` when a tune has finished: evaluate on the test split, write both card files and return
    the name ``tune.json``'s ``model_card`` points at. A failing evaluation leaves a card without it (warned)."""
    evaluation, note = None, ""
    has_test = bool(((dataset or {}).get("splits") or {}).get("test")) if dataset else True
    if has_test:
        protocol.progress("card", 0.98, "model card: the best weights on the test split")
        try:
            evaluation = evaluate_test(tune_dir, record)
        except Exception as exc:  # the tune is finished; the card says why it has no test evaluation
            _LOG.exception("model card: test evaluation failed")
            note = f"test evaluation failed: {type(exc).__name__}: {exc}"[:500]
            protocol.log(f"model card: {note}", "warning")
    else:
        note = "the dataset has no test split"
    return write_card(tune_dir, build_card(record, dataset, evaluation, note))
