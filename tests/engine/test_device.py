"""The one device setting (engine/device.py): parsing and resolving without a GPU, then what torch really sees."""

from __future__ import annotations

import pytest

from geostudio_plugin.engine.device import (
    DeviceRequest, TorchDevices, parse_device, resolve_device, torch_devices, trainer_device,
)
from geostudio_plugin.engine.protocol import EngineError
from geostudio_plugin.engine.tuning.spec import TuneSpec

NO_GPU = TorchDevices(cuda=0, cuda_names=(), mps=False, cuda_build=None)
TWO_GPUS = TorchDevices(cuda=2, cuda_names=("GPU A", "GPU B"), mps=False, cuda_build="12.4")
MAC = TorchDevices(cuda=0, cuda_names=(), mps=True, cuda_build=None)


@pytest.mark.parametrize("setting, expected", [
    ("auto", DeviceRequest("auto")), ("", DeviceRequest("auto")), (None, DeviceRequest("auto")),
    ("cpu", DeviceRequest("cpu")), ("cuda", DeviceRequest("cuda")), ("cuda:3", DeviceRequest("cuda", 3)),
    ("mps", DeviceRequest("mps")), (" CUDA:1 ", DeviceRequest("cuda", 1)), ("gpu", DeviceRequest("cuda")),
])
def test_parse(setting, expected):
    assert parse_device(setting) == expected


@pytest.mark.parametrize("setting", ["tpu", "cuda:", "cuda:x", "cuda1", "cpu:0", "mps:0"])
def test_parse_refuses(setting):
    with pytest.raises(EngineError) as raised:
        parse_device(setting)
    assert raised.value.code == "invalid_spec" and setting in raised.value.message


@pytest.mark.parametrize("setting, seen, expected", [
    ("auto", NO_GPU, "cpu"), ("auto", TWO_GPUS, "cuda:0"), ("auto", MAC, "cpu"),
    ("cpu", TWO_GPUS, "cpu"), ("cuda", TWO_GPUS, "cuda:0"), ("cuda:1", TWO_GPUS, "cuda:1"), ("mps", MAC, "mps"),
])
def test_resolve(setting, seen, expected):
    assert resolve_device(setting, seen) == expected


@pytest.mark.parametrize("setting, seen, words", [
    ("cuda", NO_GPU, ["'cuda'", "no CUDA device", "CPU-only"]),
    ("cuda:2", TWO_GPUS, ["'cuda:2'", "2 CUDA devices", "cuda:1 (GPU B)"]),
    ("mps", NO_GPU, ["'mps'", "MPS"]),
    ("gpu", TorchDevices(cuda_build="12.4"), ["'cuda'", "CUDA 12.4"]),
])
def test_no_gpu_names_the_setting_and_what_torch_sees(setting, seen, words):
    with pytest.raises(EngineError) as raised:
        resolve_device(setting, seen)
    assert raised.value.code == "no_gpu" and raised.value.exit_code == 3
    for word in words:
        assert word in raised.value.message, raised.value.message


def test_cpu_never_asks_torch():
    assert resolve_device("cpu", seen=None) == "cpu"  # no torch import needed for the CPU


def test_trainer_device():
    assert trainer_device("cpu") == {"accelerator": "cpu", "devices": 1}
    assert trainer_device("mps") == {"accelerator": "mps", "devices": 1}
    assert trainer_device("cuda:1") == {"accelerator": "gpu", "devices": [1]}
    assert trainer_device("cuda:0", 2) == {"accelerator": "gpu", "devices": 2}


@pytest.mark.parametrize("device, accelerator, expected", [
    ("", "auto", "auto"), ("", "gpu", "cuda"), ("", "cuda", "cuda"), ("", "cpu", "cpu"),
    ("cuda:1", "cpu", "cuda:1"), ("gpu", "auto", "cuda"), ("mps", "auto", "mps"),
])
def test_tune_spec_device_and_legacy_accelerator(device, accelerator, expected):
    spec = TuneSpec.model_validate({"name": "water", "dataset_id": "d", "base_model_id": "b", "tune_template_id": "t",
                                    "device": device, "train_options": {"accelerator": accelerator}})
    assert spec.device == expected


def test_what_torch_sees_here():
    seen = torch_devices()
    assert resolve_device("auto", seen) == ("cuda:0" if seen.cuda else "cpu")
    assert seen.describe().startswith("torch sees")
