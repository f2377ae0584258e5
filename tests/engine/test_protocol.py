"""The engine's protocol: JSON-lines events on stdout, documented exit codes, spec files and stdin."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import (EVENT_KINDS, EXIT_CANCELLED, EXIT_EXTERNAL, EXIT_INPUT, EXIT_INTERNAL, EXIT_INVALID_SPEC,
                      EXIT_OK, EXIT_USAGE, engine_command, engine_env, leftovers, onboarding_payload, parse_stdout,
                      run_engine)


def test_tune_stdout_holds_only_events_although_lightning_prints(trained):
    run = trained["tune_run"]
    lines = run.stdout.splitlines()
    assert len(lines) > 10
    for number, line in enumerate(lines, start=1):
        obj = json.loads(line)  # raises on the first line that is not JSON
        assert isinstance(obj, dict), f"line {number} is not an object: {line!r}"
        assert obj.get("event") in EVENT_KINDS, f"line {number} has no known event: {line!r}"
    # Lightning did print (its model summary); it went to stderr, not into the protocol stream.
    assert "Trainable params" in run.stderr
    assert "Trainable params" not in run.stdout


def test_tune_event_shapes(trained):
    run = trained["tune_run"]
    progress = run.of("progress")
    assert progress and all({"stage", "fraction", "message"} <= e.keys() for e in progress)
    fractions = [e["fraction"] for e in progress]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions), "progress went backwards"
    assert progress[-1]["fraction"] == 1.0
    assert {"train"} <= {e["stage"] for e in progress}
    metrics = run.of("metric")
    assert metrics and all({"name", "value", "epoch", "step", "stage"} <= e.keys() for e in metrics)
    assert all(e["level"] in ("debug", "info", "warning", "error", "critical") for e in run.of("log"))
    results = run.of("result")
    assert len(results) == 1 and {"outputs", "summary"} <= results[0].keys()
    assert run.of("error") == []


def test_spec_file_that_is_not_json_exits_2_naming_file_and_line(tmp_path: Path):
    spec = tmp_path / "broken spec.json"
    spec.write_text('{\n  "dataset_name": "x",\n  "dataset_url" "/data"\n}\n')  # missing colon on line 3
    rc, events = run_engine("onboard", spec, tmp_path / "ws")
    assert rc == EXIT_USAGE
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1
    assert errors[0]["code"] == "spec_not_json"
    assert str(spec) in errors[0]["message"]
    assert "line 3" in errors[0]["message"]
    assert errors[0]["hint"]


def test_spec_file_that_does_not_exist_exits_2(tmp_path: Path):
    missing = tmp_path / "nowhere.json"
    rc, events = run_engine("onboard", missing, tmp_path / "ws")
    assert rc == EXIT_USAGE
    error = events[-1]
    assert error["event"] == "error" and error["code"] == "spec_unreadable"
    assert str(missing) in error["message"]


def test_bad_json_on_stdin_names_standard_input(tmp_path: Path):
    rc, events = run_engine("onboard", "-", tmp_path / "ws", stdin='{"dataset_name": ,}')
    assert rc == EXIT_USAGE
    error = events[-1]
    assert error["code"] == "spec_not_json"
    assert "standard input" in error["message"] and "line 1" in error["message"]


def _one_category(payload: dict) -> None:
    payload["label_categories"] = [{"id": "1", "name": "Water", "color": "#1f78b4", "opacity": 1}]


def _label_suffix_is_file_suffix(payload: dict) -> None:
    payload["label_suffix"] = payload["data_sources"][0]["file_suffix"]


def _bands_missing(payload: dict) -> None:
    del payload["data_sources"][0]["bands"]


def _bad_colour(payload: dict) -> None:
    payload["label_categories"][2]["color"] = "blue"


def _split_not_summing_to_one(payload: dict) -> None:
    payload["onboarding_options"]["split"] = [0.5, 0.2, 0.2]


@pytest.mark.parametrize("mutate, field", [
    (_one_category, "label_categories"),
    (_label_suffix_is_file_suffix, "label_suffix"),
    (_bands_missing, "data_sources.0.bands"),
    (_bad_colour, "label_categories.2.color"),
    (_split_not_summing_to_one, "onboarding_options.split"),
], ids=["one-category", "label-suffix-equals-file-suffix", "bands-missing", "bad-colour", "split-sum"])
def test_invalid_onboarding_spec_exits_3_naming_the_field(tmp_path: Path, mutate, field: str):
    payload = onboarding_payload()
    mutate(payload)
    workspace = tmp_path / "ws"
    rc, events = run_engine("onboard", payload, workspace)
    assert rc == EXIT_INVALID_SPEC
    error = events[-1]
    assert error["event"] == "error" and error["code"] == "invalid_spec"
    assert error["details"], "details should list each bad field"
    texts = [f"{d['field']}: {d['message']}" for d in error["details"]]
    assert any(field in t or field.replace("_", " ") in t for t in texts), texts
    assert field.split(".")[0].replace("_", " ") in error["message"].replace("_", " ")
    assert leftovers(workspace, "datasets") == []


def test_unknown_command_fails(tmp_path: Path):
    run = run_engine("frobnicate", None, tmp_path / "ws")
    assert run.returncode == EXIT_USAGE
    assert "frobnicate" in run.stderr  # argparse names the bad choice
    assert run.result is None


def test_no_command_is_a_usage_error(tmp_path: Path):
    proc = subprocess.run(engine_command(tmp_path / "ws"), capture_output=True, text=True, env=engine_env(),
                          timeout=60)
    events, bad = parse_stdout(proc.stdout)
    assert not bad
    assert proc.returncode == EXIT_USAGE
    assert events[-1]["event"] == "error" and events[-1]["code"] == "no_command"


def test_spec_on_stdin_works(tmp_path: Path):
    workspace = tmp_path / "ws"
    run = run_engine("onboard", "-", workspace, stdin=json.dumps(onboarding_payload(name="from stdin")))
    assert run.returncode == EXIT_OK, run.describe()
    summary = run.result["summary"]
    assert summary["n_samples"] == 6
    dataset_dir = Path(run.result["outputs"]["dataset_dir"])
    assert dataset_dir.parent == workspace.resolve() / "datasets"
    record = json.loads((dataset_dir / "dataset.json").read_text())
    assert record["dataset_name"] == "from stdin"
    assert leftovers(workspace) == []


def test_exit_codes_are_the_documented_ones():
    from geostudio_plugin.engine import protocol

    assert (protocol.EXIT_OK, protocol.EXIT_INTERNAL, protocol.EXIT_USAGE, protocol.EXIT_INVALID_SPEC,
            protocol.EXIT_INPUT, protocol.EXIT_EXTERNAL, protocol.EXIT_CANCELLED) == (
        EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INVALID_SPEC, EXIT_INPUT, EXIT_EXTERNAL, EXIT_CANCELLED)
