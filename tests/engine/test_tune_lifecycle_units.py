"""Unit tests of the tune lifecycle: out-of-memory classification and a forced OOM in a real (tiny) training run,
signals deferred while a checkpoint is written, the dry-run/resume spec fields."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import onboarding_payload, run_ok, tune_payload

from geostudio_plugin.engine import protocol
from geostudio_plugin.engine.tuning import train
from geostudio_plugin.engine.tuning.spec import TuneSpec
from geostudio_plugin.engine.workspace import Workspace


@pytest.mark.parametrize("exc", [
    RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 68719476736 bytes."),
    RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB)"),
    MemoryError(),
])
def test_out_of_memory_is_training_out_of_memory(exc):
    error = train.training_error(exc, "cuda:0")
    assert error is not None and error.code == "training_out_of_memory" and error.exit_code == 4
    assert "batch_size" in error.hint


def test_torch_out_of_memory_error_and_others():
    import torch

    assert train.training_error(torch.OutOfMemoryError("CUDA out of memory."), "cuda:0").code == \
        "training_out_of_memory"
    assert train.training_error(RuntimeError("stack expects each tensor to be equal size"), "cpu").code == \
        "training_data_error"
    assert train.training_error(RuntimeError("something else"), "cpu") is None
    assert train.training_error(ValueError("out of memory"), "cpu") is None  # not a RuntimeError: a bug


def test_signals_wait_for_the_checkpoint_then_cancel():
    previous = signal.getsignal(signal.SIGTERM)

    def cancel(signum, _frame):
        raise protocol.Cancelled(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, cancel)
    written = []
    try:
        with pytest.raises(protocol.Cancelled):
            with train.deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write
                written.append("whole checkpoint")
        assert written == ["whole checkpoint"]
        assert signal.getsignal(signal.SIGTERM) is cancel
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_dry_run_and_resume_exclude_each_other():
    spec = tune_payload("ds-1")
    spec["train_options"].update(dry_run=True, resume_from="tune-1")
    with pytest.raises(ValueError, match="exclude each other"):
        TuneSpec.model_validate(spec)
    spec["train_options"]["resume_from"] = "../tunes/x"
    spec["train_options"]["dry_run"] = False
    with pytest.raises(ValueError):
        TuneSpec.model_validate(spec)


def test_forced_oom_in_the_second_epoch_fails_and_keeps_a_resumable_tune(tmp_path, monkeypatch):
    """A real tiny training run in this process; the second epoch's first batch raises CUDA's OOM error."""
    from geostudio_plugin.engine.tuning.tune import tune as run_tune

    workspace_dir = tmp_path / "ws"
    dataset_id = run_ok("onboard", onboarding_payload(chip_size=128), workspace_dir).result["summary"]["dataset_id"]
    original = train.ProtocolCallback.on_train_batch_end

    def oom_in_epoch_two(self, trainer, *args):
        if trainer.current_epoch == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (forced by the test)")
        return original(self, trainer, *args)

    monkeypatch.setattr(train.ProtocolCallback, "on_train_batch_end", oom_in_epoch_two)
    workspace = Workspace(workspace_dir).prepare("tune")
    spec = TuneSpec.model_validate(tune_payload(dataset_id, max_epochs=3, name="oom-tune"))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(protocol.EngineError) as caught:
            run_tune(spec, workspace)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert caught.value.code == "training_out_of_memory" and "20.00 GiB" in caught.value.message
    (folder,) = (workspace_dir / "tunes").iterdir()
    record = json.loads((folder / "tune.json").read_text())
    assert record["status"] == "Failed" and record["resumable"] and record["epochs_run"] == 1
    assert record["error"]["code"] == "training_out_of_memory"
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert [h["epoch"] for h in record["history"]] == [0]
    assert not list((workspace_dir / ".tmp").iterdir())


def test_the_planned_epochs_are_those_of_the_rendered_config():
    from geostudio_plugin.engine.tuning.render import configured_epochs

    assert configured_epochs("trainer:\n  max_epochs: 7\n  accelerator: cpu\n") == 7  # a plain-YAML template's own
    assert configured_epochs("trainer:\n  accelerator: cpu\n") is None  # Lightning's default: the record's stands
    for bad in ("trainer:\n  max_epochs: true\n", "trainer:\n  max_epochs: -1\n", "trainer: [", "- a\n"):
        assert configured_epochs(bad) is None
