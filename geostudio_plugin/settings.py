"""Plugin settings in QgsSettings under one prefix. Secrets never go here: they live in QgsAuthManager."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from qgis.core import QgsSettings

from . import engine_runtime
from .contract import normalise_device

PREFIX = "GeoStudio"


def _settings() -> QgsSettings:
    return QgsSettings()


def _get(key: str, default: str = "") -> str:
    value = _settings().value(f"{PREFIX}/{key}", default)
    return "" if value is None else str(value)


def _set(key: str, value: object) -> None:
    _settings().setValue(f"{PREFIX}/{key}", value)


def engine_python_override() -> str:
    """An existing interpreter chosen by the user; empty means the managed engine environment."""
    return _get("engine/python")


def set_engine_python_override(path: str) -> None:
    _set("engine/python", path.strip())


def engine_python() -> Optional[Path]:
    return engine_runtime.resolve_engine_python(engine_python_override())


def workspace() -> Path:
    chosen = _get("workspace")
    return Path(chosen).expanduser() if chosen else engine_runtime.default_workspace()


def set_workspace(path: str) -> None:
    _set("workspace", path.strip())


def allow_downloads() -> bool:
    """Whether the engine may download model weights (Hugging Face); off by default."""
    return _get("engine/allow_downloads", "false").lower() in ("true", "1")


def set_allow_downloads(value: bool) -> None:
    _set("engine/allow_downloads", bool(value))


def device() -> str:
    """Where tuning and inference run: auto, cpu, cuda, cuda:N or mps (contract.DEVICES); an unusable stored
    value reads as auto, the older "gpu" as cuda."""
    try:
        return normalise_device(_get("engine/device", "auto"))
    except ValueError:
        return "auto"


def set_device(value: str) -> None:
    """Raises ValueError for a value outside the device vocabulary."""
    _set("engine/device", normalise_device(value))


def warm_engine() -> bool:
    """Whether jobs run in the warm engine (a fork server that keeps torch loaded); on by default where it
    works (Linux), jobs run as their own processes otherwise."""
    return _get("engine/warm", "true").lower() in ("true", "1")


def set_warm_engine(value: bool) -> None:
    _set("engine/warm", bool(value))


def warm_engine_at_start() -> bool:
    """Start the warm engine when QGIS starts (opt-in: it holds about 1 GB while idle)."""
    return _get("engine/warm_at_start", "false").lower() in ("true", "1")


def set_warm_engine_at_start(value: bool) -> None:
    _set("engine/warm_at_start", bool(value))


def warm_engine_idle_minutes() -> int:
    """Minutes without a job after which the warm engine ends and frees its memory (default 15)."""
    try:
        return max(1, int(float(_get("engine/warm_idle_minutes", "15"))))
    except ValueError:
        return 15


def set_warm_engine_idle_minutes(minutes: int) -> None:
    _set("engine/warm_idle_minutes", max(1, int(minutes)))


# Where a backbone's training starts (the Fine-tuning dock's Weights choice), remembered per backbone.
WEIGHTS_RANDOM, WEIGHTS_PRETRAINED, WEIGHTS_FILE = "random", "pretrained", "file"
WEIGHTS_CHOICES = (WEIGHTS_RANDOM, WEIGHTS_PRETRAINED, WEIGHTS_FILE)


def _backbone_key(backbone: str) -> str:
    """A backbone name as one settings key (a '/' would nest groups)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", backbone.strip()) or "_"


def weights_choice(backbone: str) -> str:
    """random (the default: it needs nothing, so it works on an offline machine), pretrained or file."""
    value = _get(f"tuning/weights/{_backbone_key(backbone)}", WEIGHTS_RANDOM)
    return value if value in WEIGHTS_CHOICES else WEIGHTS_RANDOM


def set_weights_choice(backbone: str, choice: str) -> None:
    if choice not in WEIGHTS_CHOICES:
        raise ValueError(f"unknown weights choice '{choice}': one of {', '.join(WEIGHTS_CHOICES)}")
    _set(f"tuning/weights/{_backbone_key(backbone)}", choice)


def weights_file(backbone: str) -> str:
    """The local checkpoint last picked for this backbone ("" when none)."""
    return _get(f"tuning/weights_file/{_backbone_key(backbone)}")


def set_weights_file(backbone: str, path: str) -> None:
    _set(f"tuning/weights_file/{_backbone_key(backbone)}", path.strip())


def last_folder() -> str:
    """The folder of the last model or template file picked or saved in the Fine-tuning dock ("" = home)."""
    return _get("tuning/last_folder")


def set_last_folder(path: str) -> None:
    _set("tuning/last_folder", path.strip())
