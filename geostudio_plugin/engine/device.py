"""One device setting for tuning and inference: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

``parse_device`` reads the setting (no torch needed); ``resolve_device`` asks torch what this machine
has and answers the concrete device (``cpu``, ``cuda:0``, ``mps``), or a ``no_gpu`` error that names the
setting and what torch sees. ``trainer_device`` turns the answer into Lightning's accelerator/devices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Union

from .protocol import SpecError

PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$"
CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# train_options.accelerator, the tune spec's older setting: Lightning's names, "gpu" meaning CUDA
LEGACY_ACCELERATORS = {"auto": "auto", "cpu": "cpu", "gpu": "cuda", "cuda": "cuda", "mps": "mps"}


@dataclass(frozen=True)
class DeviceRequest:
    kind: str  # auto | cpu | cuda | mps
    index: Optional[int] = None  # cuda:N

    def __str__(self) -> str:
        return f"{self.kind}:{self.index}" if self.index is not None else self.kind


def parse_device(setting: Optional[str]) -> DeviceRequest:
    """The setting as (kind, index); empty means auto, "gpu" (the older spelling) means cuda."""
    text = (setting or "auto").strip().lower()
    text = LEGACY_ACCELERATORS.get(text, text)
    if not re.match(PATTERN, text):
        raise SpecError("invalid_spec", f"device '{setting}' is not one of {', '.join(CHOICES)}.",
                        "Set device to auto, cpu, cuda, cuda:N (a GPU's number) or mps.")
    kind, _, index = text.partition(":")
    return DeviceRequest(kind, int(index) if index else None)


@dataclass(frozen=True)
class TorchDevices:
    """What torch sees on this machine."""

    cuda: int = 0  # number of CUDA devices
    cuda_names: tuple[str, ...] = ()
    mps: bool = False
    cuda_build: Optional[str] = None  # torch.version.cuda: None for a CPU-only build

    def describe(self) -> str:
        if self.cuda:
            gpus = ", ".join(f"cuda:{i} ({name})" for i, name in enumerate(self.cuda_names))
            seen = f"torch sees {self.cuda} CUDA device{'s' if self.cuda > 1 else ''}: {gpus}"
        elif self.cuda_build is None:
            seen = "torch sees no CUDA device (this torch is a CPU-only build)"
        else:
            seen = f"torch sees no CUDA device (torch built for CUDA {self.cuda_build}; no driver or GPU found)"
        return seen + ("; MPS (Apple GPU) is available" if self.mps else "")


def torch_devices() -> TorchDevices:
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = getattr(torch.backends, "mps", None)
    mps = bool(backend and backend.is_available())
    return TorchDevices(count, tuple(torch.cuda.get_device_name(i) for i in range(count)), mps, torch.version.cuda)


def resolve_device(setting: Union[str, DeviceRequest, None], seen: Optional[TorchDevices] = None) -> str:
    """The device to run on: ``cpu``, ``cuda:N`` or ``mps``. ``auto`` takes the first CUDA device, else the CPU."""
    request = setting if isinstance(setting, DeviceRequest) else parse_device(setting)
    if request.kind == "cpu":
        return "cpu"
    seen = seen or torch_devices()
    if request.kind == "auto":
        return "cuda:0" if seen.cuda else "cpu"
    if request.kind == "mps":
        if not seen.mps:
            raise SpecError("no_gpu", f"device '{request}' asks for the Apple GPU (MPS), but {seen.describe()}.",
                            "Use device auto or cpu.")
        return "mps"
    index = request.index or 0
    if index >= seen.cuda:
        raise SpecError("no_gpu", f"device '{request}' asks for a CUDA GPU, but {seen.describe()}.",
                        "Use device auto or cpu, pick a GPU torch lists, or check the NVIDIA driver.")
    return f"cuda:{index}"


def trainer_device(device: str, count: int = 1) -> dict[str, Any]:
    """Lightning's ``accelerator`` and ``devices`` for a resolved device (``count`` GPUs from cuda:0 for "cuda:0")."""
    kind, _, index = device.partition(":")
    if kind == "cuda":
        return {"accelerator": "gpu", "devices": count if count > 1 and index in ("", "0") else [int(index or 0)]}
    return {"accelerator": kind, "devices": 1}
