"""Pre-trained weights for a backbone: a local checkpoint file, the Hugging Face cache, or random initialisation.

Where a backbone's weights live on the hub is data (``data/weights.json``): the repository and file TerraTorch and
timm download themselves, so a file in the hub cache is what they find offline with ``pretrained: true``. A local
file is handed to TerraTorch the way its family loads one (``backbone_ckpt_path`` for Prithvi, TerraMind and
Clay; timm's ``pretrained_cfg_overlay`` file for ResNet and ConvNeXt). The ``weights`` command downloads into the
hub cache through ``huggingface_hub`` with progress events (bytes, total, speed): a connection cut mid-file is
resumed with a Range request; a cancelled download is discarded (huggingface_hub 2.4 keeps a partial file per
attempt and removes it), so a partial file is never used. Downloads happen there only, never inside a tune.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from pydantic import Field

from .. import protocol
from ..catalog import DATA_DIR, find_backbone
from ..protocol import EngineError, SpecError
from ..specs import StudioModel
from ..workspace import Workspace

RANDOM = "random"
PRETRAINED = "pretrained"


@lru_cache(maxsize=1)
def hub_table() -> dict[str, dict[str, str]]:
    return json.loads((DATA_DIR / "weights.json").read_text(encoding="utf-8"))["weights"]


def hub_location(registry_name: str) -> dict[str, str]:
    """``{family, repo_id, filename}`` of a backbone's published weights (SpecError when it has none)."""
    try:
        return hub_table()[registry_name]
    except KeyError:
        raise SpecError("weights_unknown", f"No published pre-trained weights are known for backbone "
                        f"{registry_name}.", "Use train_options.weights: random, or a local checkpoint file.") \
            from None


@dataclass(frozen=True)
class Weights:
    """How a tune's backbone starts: what the tune record keeps and the template's backbone arguments."""

    origin: str  # "random", "hub_cache" or "file"
    path: Optional[str] = None
    repo_id: Optional[str] = None
    filename: Optional[str] = None
    pretrained: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra backbone_* arguments, without the prefix

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "kwargs" and v not in (None, False)}


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filename: str) -> Optional[Path]:
    """The complete file in the hub cache, or None (an ``.incomplete`` download does not count)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _check_file(path: Path, where: str) -> None:
    """A checkpoint torch can read (state dict, Lightning .ckpt or safetensors), before training starts."""
    if not path.is_file():
        raise SpecError("weights_file_missing", f"{where} {path} does not exist.",
                        "Give the path of a checkpoint file (.pt, .pth, .ckpt or .safetensors), or 'random'.")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        else:
            import torch

            torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # noqa: BLE001 - any reader error means "not a checkpoint"
        raise SpecError("weights_file_unreadable", f"{where} {path} is not a checkpoint torch can read: "
                        f"{type(exc).__name__}: {str(exc)[:200]}",
                        "Give a state dict saved with torch.save, a Lightning .ckpt or a .safetensors file.") from None


def resolve(registry_name: str, choice: str) -> Weights:
    """The weights a tune starts from. ``choice``: "random", "pretrained" (the hub cache) or a checkpoint path."""
    choice = (choice or RANDOM).strip()
    if choice == RANDOM:
        return Weights("random")
    if choice == PRETRAINED:
        where = hub_location(registry_name)
        path = cached_file(where["repo_id"], where["filename"])
        if path is None:
            raise EngineError(
                "weights_missing",
                f"Backbone {registry_name} needs {where['filename']} from the Hugging Face repository "
                f"{where['repo_id']}, and it is not in the cache {hub_cache_dir()}.",
                "Download it (GeoStudio > Settings: allow downloads, then Download weights, or the engine's "
                "`weights` command), or copy the file into that cache, or point train_options.weights at a local "
                "copy, or train from random initialisation (train_options.weights: random).")
        return Weights("hub_cache", str(path), where["repo_id"], where["filename"], pretrained=True)
    path = Path(choice).expanduser()
    _check_file(path, "The weights file")
    family = hub_table().get(registry_name, {}).get("family") or _family_of(registry_name)
    if family == "timm":
        return Weights("file", str(path), pretrained=True, kwargs={"pretrained_cfg_overlay": {"file": str(path)}})
    if family == "prithvi":  # Prithvi loads ckpt_path only when pretrained is set
        return Weights("file", str(path), pretrained=True, kwargs={"ckpt_path": str(path)})
    return Weights("file", str(path), pretrained=False, kwargs={"ckpt_path": str(path)})  # TerraMind, Clay


def _family_of(registry_name: str) -> str:
    return "timm" if registry_name.startswith("timm_") else registry_name.split("_")[0]


# ------------------------------------------------------------------------------------------ the command


class WeightsSpec(StudioModel):
    """Download one backbone's published weights into the Hugging Face cache."""

    backbone: str = Field(min_length=1, description="a backbone's Studio name or TerraTorch registry name")


class _ProgressBar:
    """Enough of tqdm for huggingface_hub: turns its updates into progress events (bytes, total, speed)."""

    def __init__(self, *args: Any, total: Optional[float] = None, initial: float = 0, **kwargs: Any) -> None:
        self.total, self.n = total, initial
        self.started, self.start_n, self._last = time.monotonic(), initial, 0.0

    def update(self, count: float = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self._last >= 0.5 or (self.total and self.n >= self.total):
            self._last = now
            speed = (self.n - self.start_n) / max(now - self.started, 1e-6)
            protocol.emit("progress", stage="download", fraction=round(self.n / self.total, 4) if self.total else 0.0,
                          message=f"{self.n / 1e6:.1f} of {(self.total or 0) / 1e6:.1f} MB, {speed / 1e6:.1f} MB/s",
                          bytes=int(self.n), total=int(self.total or 0), bytes_per_s=round(speed))

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def close(self) -> None:
        return None

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        return None


def run(spec: WeightsSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    from huggingface_hub import hf_hub_download

    registry_name = find_backbone(spec.backbone)["model_params"]["backbone"]
    where = hub_location(registry_name)
    cached = cached_file(where["repo_id"], where["filename"])
    started = time.monotonic()
    if cached is None:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise EngineError("downloads_off", f"Downloading {where['filename']} from {where['repo_id']} needs "
                              "downloads allowed, and they are off.",
                              "Allow downloads in GeoStudio > Settings (or set HF_HUB_OFFLINE=0), or copy the file "
                              f"into the Hugging Face cache {hub_cache_dir()}.")
        protocol.progress("download", 0.0, f"downloading {where['filename']} from {where['repo_id']}")
        try:
            cached = Path(hf_hub_download(where["repo_id"], where["filename"], tqdm_class=_ProgressBar))
        except protocol.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - network, HTTP and hub errors all say the same to a user
            raise EngineError("download_failed", f"Downloading {where['filename']} from {where['repo_id']} "
                              f"failed: {type(exc).__name__}: {str(exc)[:300]}",
                              "Check the connection and run it again: the download continues where it stopped.") \
                from None
    size = cached.stat().st_size
    protocol.progress("done", 1.0, f"{where['filename']} is in the cache ({size / 1e6:.1f} MB)")
    return ({"path": str(cached)},
            {"backbone": registry_name, "repo_id": where["repo_id"], "filename": where["filename"], "bytes": size,
             "seconds": round(time.monotonic() - started, 1)})
