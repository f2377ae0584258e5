"""Render a template into a TerraTorch config: defaults <- user parameters, then Jinja.

Merge order follows the Studio (backbone params <- dataset training_params <-
template defaults <- user ``model_parameters``). User values may arrive as
strings (``"max_epochs": "5"``); they are coerced with the template's schema.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import jinja2

from ..catalog import template_text
from ..protocol import SpecError
from ..schema_words import allowed_text

if TYPE_CHECKING:
    from .weights import Weights

LOSSES = {"CrossEntropyLoss": "ce", "DiceLoss": "dice", "FocalLoss": "focal", "LovaszLoss": "lovasz",
          "MSELoss": "mse", "RMSELoss": "rmse", "MeanAbsoluteError": "mae"}
OPTIMIZERS = {"Adam": "torch.optim.Adam", "AdamW": "torch.optim.AdamW", "SGD": "torch.optim.SGD",
              "RMSProp": "torch.optim.RMSprop"}


def schema_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object":
            out[key] = schema_defaults(prop)
        elif "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
    return out


def _shown(value: Any) -> str:
    """A value as the message shows it: its repr, cut short (a 400-digit number says little more)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _coerce(value: Any, prop: dict[str, Any], where: str) -> Any:
    kind = prop.get("type")
    try:
        if kind in ("integer", "number") and isinstance(value, bool):
            raise TypeError  # true/false are not numbers here (int(True) would be 1)
        if kind == "integer":
            if isinstance(value, str):
                value = float(value.strip())
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        elif kind == "number":
            value = float(value)
        elif kind == "boolean":
            if isinstance(value, str):
                if value.strip().lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = value.strip().lower() in ("true", "1")
            value = bool(value)
        elif kind == "string":
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            value = str(value)
    except (TypeError, ValueError, OverflowError):
        raise SpecError("invalid_parameter", f"model_parameters.{where} = {_shown(value)} is not a valid {kind}.",
                        f"Give a {kind} value.") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError("invalid_parameter", f"model_parameters.{where} = {_shown(value)} is not a finite number.",
                        "Give a finite number (NaN and infinity are not allowed).")
    if "enum" in prop and value not in prop["enum"]:
        raise SpecError("invalid_parameter", f"model_parameters.{where} = {_shown(value)} is not allowed.",
                        "Use one of: " + ", ".join(map(str, prop["enum"])))
    if kind in ("integer", "number") and value != prop.get("offValue", object()):
        low, high = prop.get("minimum", prop.get("exclusiveMinimum")), prop.get("maximum", prop.get("exclusiveMaximum"))
        below = low is not None and (value <= low if "exclusiveMinimum" in prop else value < low)
        above = high is not None and (value >= high if "exclusiveMaximum" in prop else value > high)
        if below or above:
            allowed = allowed_text(prop)
            raise SpecError("invalid_parameter", f"model_parameters.{where} = {_shown(value)} is out of range "
                            f"(allowed: {allowed}).", f"Give a value of {allowed}.")
    return value


def merge_parameters(schema: dict[str, Any], user: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Template defaults overlaid with the user's values, each checked against the schema."""
    merged = schema_defaults(schema)
    props = schema.get("properties", {})
    for key, value in user.items():
        where = f"{prefix}{key}"
        if key not in props:
            raise SpecError("unknown_parameter", f"model_parameters.{where} is not a parameter of this template.",
                            "Known here: " + ", ".join(sorted(props)) if props else "This group takes no parameters.")
        prop = props[key]
        if prop.get("type") == "object":
            if value in (None, {}):
                continue
            if not isinstance(value, dict):
                raise SpecError("invalid_parameter", f"model_parameters.{where} must be an object.",
                                "Give a JSON object of its parameters.")
            merged[key] = merge_parameters(prop, value, where + ".")
        else:
            merged[key] = _coerce(value, prop, where)
    for key, prop in props.items():  # "at most another parameter": a tile's stride is at most its size
        other = prop.get("maximumParameter")
        if other and isinstance(merged.get(key), (int, float)) and isinstance(merged.get(other), (int, float)) \
                and merged[key] > merged[other]:
            raise SpecError("invalid_parameter", f"model_parameters.{prefix}{key} = {merged[key]} is larger than "
                            f"{prefix}{other} = {merged[other]}; tiles would leave gaps.",
                            f"Give {key} at most {other} ({merged[other]}).")
    return merged


def render(template: dict[str, Any], context: dict[str, Any]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)  # noqa: S701 - YAML, not HTML
    try:
        return env.from_string(template_text(template)).render(**context)
    except jinja2.UndefinedError as exc:
        raise SpecError("template_error", f"Template {template['id']} needs a value that is missing: {exc.message}.",
                        "The template and the dataset do not fit together; check the template file.") from None


def configured_epochs(config_text: str) -> Optional[int]:
    """``trainer.max_epochs`` of a rendered config, or None. A plain-YAML user template writes its own number
    rather than ``{{ runner.max_epochs }}``: the tune's record must plan the epochs that will actually run."""
    import yaml

    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return None
    epochs = (config.get("trainer") or {}).get("max_epochs") if isinstance(config, dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None


REGRESSION_IGNORE = -9999  # a regression label's no-data value once read (NaN is replaced by it, then ignored)


def _modality_context(dataset: dict[str, Any], dataset_dir: Path, tag: str) -> dict[str, Any]:
    modality = dict(dataset["training_params"][tag])
    bands = modality["bands"]
    modality.update({
        "tag": tag,
        "train_data_dir": str(dataset_dir / modality["train_data_dir"]),
        "labels_dir": str(dataset_dir / modality["train_labels_dir"]),
        "dataset_bands": list(range(modality["band_count"])),
        "output_bands": bands,
        # only used to plot samples; bands without R/G/B roles fall back to the first ones
        "rgb_indices": modality.get("rgb_indices") or [min(i, len(bands) - 1) for i in range(3)],
    })
    return modality


def build_context(*, tune_id: str, params: dict[str, Any], dataset: dict[str, Any], dataset_dir: Path,
                  backbone: dict[str, Any], run_dir: Path, trainer: dict[str, Any], seed: int,
                  weights: Optional["Weights"] = None) -> dict[str, Any]:
    """Jinja variables, named as in the Studio's templates where they exist there.

    ``modality`` is the first (or only) data source; ``modalities`` all of them (multi-modal templates);
    ``backbone`` carries the backbone's facts from ``backbones.json`` plus what ``compatibility`` derives
    for this dataset: ``bands`` (Prithvi/Clay names), ``modality_bands`` (TerraMind subsets),
    ``neck_indices``, ``img_size`` (Clay), ``kwargs`` (extra ``backbone_*`` arguments).
    """
    from .compatibility import backbone_inputs

    tp = dataset["training_params"]
    modalities = [_modality_context(dataset, dataset_dir, tag) for tag in dataset["modalities"]]
    modality = modalities[0]
    classes = dataset["classes"]
    regression = dataset["purpose"] == "Regression"
    loss_name = params["model"]["decode_head"]["loss_decode"]["type"]
    inputs = backbone_inputs(backbone, dataset, params)
    tiles = dict(params["model"]["tiled_inference_parameters"])
    if inputs["img_size"]:  # a backbone of one image size (Clay) is tiled at that size
        for crop, stride in (("h_crop", "h_stride"), ("w_crop", "w_stride")):
            tiles[crop] = inputs["img_size"]
            tiles[stride] = min(tiles[stride], inputs["img_size"])
    rgb_modality = next((m["tag"] for m in modalities if m.get("rgb_indices") and dataset["training_params"][m["tag"]]
                         .get("rgb_indices")), modality["tag"])
    return {
        **params,
        "tune_id": tune_id,
        "seed": seed,
        "dataset_id": dataset["dataset_id"],
        "purpose": dataset["purpose"],
        "run_dir": str(run_dir),
        "checkpoint_dir": str(run_dir / "checkpoints"),
        "trainer": trainer,
        "backbone": {"name": backbone["model_params"]["backbone"], **backbone["model_params"], **inputs,
                     # where the backbone starts: random, the hub cache (pretrained) or a file (tuning/weights.py)
                     "pretrained": bool(weights and weights.pretrained),
                     "kwargs": {**inputs.get("kwargs", {}), **(weights.kwargs if weights else {})}},
        "modality": modality,
        "modalities": modalities,
        "multimodal": len(modalities) > 1,
        "rgb_modality": rgb_modality,
        "labels_dir": modality["labels_dir"],
        "train_split_path": str(dataset_dir / tp["train_split_path"]),
        "val_split_path": str(dataset_dir / tp["val_split_path"]),
        "test_split_path": str(dataset_dir / tp["test_split_path"]),
        "img_suffix": modality["file_suffix"],
        "seg_map_suffix": tp["label_suffix"],
        "dataset_bands": modality["dataset_bands"],
        "output_bands": modality["output_bands"],
        "rgb_band_indices": modality["rgb_indices"],
        "norm_means": modality["norm_means"],
        "norm_stds": modality["norm_stds"],
        "num_classes": len(classes),
        "class_names": [c["name"] for c in classes],
        "class_weights": tp.get("class_weights"),
        "label_nodata": REGRESSION_IGNORE if regression else -1,
        "loss": LOSSES.get(loss_name, loss_name),
        "optimizer_class": OPTIMIZERS[params["optimizer"]["type"]],
        "tiles": tiles,
    }
