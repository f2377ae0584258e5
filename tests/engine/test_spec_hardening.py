"""Issue 9, spec side: usage errors, non-finite numbers, bounds, tiling minimums, suffixes and ids, unknown fields.

Each test runs the real engine CLI; every case here stops at validation (about a second, no torch import).
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXIT_INVALID_SPEC, EXIT_USAGE, engine_command, engine_env, parse_stdout, run_engine

import subprocess


def _cli(workspace: Path, *args: str) -> tuple[int, list[dict], str]:
    proc = subprocess.run(engine_command(workspace, *args), capture_output=True, text=True, env=engine_env(),
                          cwd=str(workspace.parent), timeout=60)
    events, bad = parse_stdout(proc.stdout)
    assert not bad, f"non-event lines on stdout: {bad!r}"
    return proc.returncode, events, proc.stderr


# --- #11: every exit, argparse usage errors included, ends with one JSON error event ---------------------------

def test_usage_errors_end_with_one_error_event(tmp_path: Path):
    workspace = tmp_path / "ws"
    workspace.parent.mkdir(parents=True, exist_ok=True)
    for args, named in ((["bogus"], "bogus"), (["tune"], "spec"), (["list", "a", "b"], "b"),
                        (["--bogus-option", "list"], "--bogus-option"), (["--workspace"], "--workspace")):
        code, events, _ = _cli(workspace, *args)
        assert code == EXIT_USAGE, (args, code, events)
        errors = [e for e in events if e["event"] == "error"]
        assert len(errors) == 1 and events[-1] is errors[0], (args, events)
        assert errors[0]["code"] == "usage", (args, errors)
        assert named in errors[0]["message"], (args, errors)
    code, events, _ = _cli(workspace, "--help")
    assert code == 0 and not [e for e in events if e["event"] == "error"]


# --- #6: non-finite numbers are refused anywhere in a spec, naming the field -----------------------------------

def _onboarding(tmp_path: Path, **changes) -> dict:
    from conftest import onboarding_payload

    payload = onboarding_payload(tmp_path / "no-such-folder")
    for path, value in changes.items():
        target = payload
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return payload


def _tune(**model_parameters) -> dict:
    return {"name": "bad-input", "dataset_id": "no-such-dataset", "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "model_parameters": model_parameters,
            "train_options": {"accelerator": "cpu"}}


def _infer(**changes) -> dict:
    spec = {"fine_tuning_id": "no-such-tune", "spatial_domain": {"urls": ["/no/such/file.tif"]}}
    spec.update(changes)
    return spec


def _refused(run, field: str, code: str = "invalid_spec", exit_code: int = EXIT_INVALID_SPEC) -> dict:
    assert run.returncode == exit_code, run.describe()
    assert run.error["code"] == code, run.describe()
    text = run.error["message"] + json.dumps(run.error.get("details"))
    assert field in text, (field, run.error)
    return run.error


def test_non_finite_numbers_refused_naming_the_field(tmp_path: Path):
    ws = tmp_path / "ws"
    nan, inf = float("nan"), float("inf")
    cases = [
        ("onboard", _onboarding(tmp_path, onboarding_options__split=[nan, 0.5, 0.5]), "onboarding_options.split.0"),
        ("onboard", _onboarding(tmp_path, label_categories__1__weight=nan), "label_categories.1.weight"),
        ("onboard", _onboarding(tmp_path, data_sources__0__bands__0__scaling_factor=inf),
         "data_sources.0.bands.0.scaling_factor"),
        ("onboard", _onboarding(tmp_path, training_params={"class_weights": [1.0, nan]}), "training_params.class_weights.1"),
        ("tune", _tune(optimizer={"lr": inf}), "model_parameters.optimizer.lr"),
        ("tune", {**_tune(), "train_options": {"accelerator": "cpu", "gradient_clip_val": -inf}},
         "train_options.gradient_clip_val"),
        ("infer", _infer(maxcc=nan), "maxcc"),
        ("catalog", {"timeout_s": "Infinity"}, "timeout_s"),
    ]
    for command, spec, field in cases:
        error = _refused(run_engine(command, spec, ws), field)
        assert "finite" in (error["message"] + json.dumps(error["details"])).lower(), error


def test_non_finite_template_parameter_as_text_refused(tmp_path: Path):
    run = run_engine("tune", _tune(optimizer={"lr": "nan"}), tmp_path / "ws")
    _refused(run, "model_parameters.optimizer.lr", "invalid_parameter")
