"""User-defined templates (issue 12): import a TerraTorch YAML, validated against a real dataset; list it beside the
built-ins; train it; export it and import the export; delete it; and the bad templates, each refused with its code.

The template is the config a real built-in tune renders (a dry run of ``timm_resnet_seg`` on the bundled
Sen1Floods11 chips) with Jinja variables put back in: the tune folder as ``{{ run_dir }}``, ``{{ runner.max_epochs }}``
(with a small schema of its own: default 1, at most 3) and ``{{ data.batch_size }}`` (a built-in parameter). One
batch per split keeps the training to seconds. The bad-input cases run in subprocesses beside the main flow (each
import that builds a model imports TerraTorch: ~20 s on two cores).
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import (EXIT_INVALID_SPEC, engine_command, engine_env, onboarding_payload, parse_stdout, run_engine,
                      run_ok, tune_payload)

SCHEMA = {"type": "object", "properties": {"runner": {"type": "object", "properties": {
    "max_epochs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 3, "studio_name": "Training epochs"}}}}}


def jinja_from(config: str, tune_dir: str) -> str:
    """The rendered config with variables put back, and one batch per split."""
    text = config.replace(tune_dir, "{{ run_dir }}")
    text = text.replace("  max_epochs: 1\n", "  max_epochs: {{ runner.max_epochs }}\n"
                        "  limit_train_batches: 1\n  limit_val_batches: 1\n  limit_test_batches: 1\n")
    text = text.replace("    batch_size: 4\n", "    batch_size: {{ data.batch_size }}\n")
    assert text.count("{{") == text.count("}}") == 5, text  # 3 paths, 2 parameters
    return text


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("user-templates")
    workspace = root / "workspace"
    onboard = run_ok("onboard", onboarding_payload(chip_size=128), workspace)
    dataset_id = onboard.result["summary"]["dataset_id"]
    dry = tune_payload(dataset_id, name="template-source")
    dry["train_options"]["dry_run"] = True
    run = run_ok("tune", dry, workspace)
    tune_dir = run.result["outputs"]["tune_dir"]
    text = jinja_from(Path(run.result["outputs"]["config"]).read_text(), tune_dir)
    (root / "water.yaml.j2").write_text(text)
    return {"root": root, "workspace": workspace, "dataset_id": dataset_id, "text": text}


def line_of(text: str, part: str) -> str:
    return f"line {next(i for i, line in enumerate(text.splitlines(), 1) if part in line)}"


BAD = {  # case -> (how the template text changes, code, words the message must hold, given the original text)
    "syntax": (lambda t: t.replace("{{ data.batch_size }}", "{{ data.batch_size }"), "template_syntax",
               lambda t: [line_of(t, "{{ data.batch_size }}")]),
    "undefined": (lambda t: t.replace("{{ data.batch_size }}", "{{ batch_sizes }}"), "template_undefined",
                  lambda t: ["batch_sizes", line_of(t, "{{ data.batch_size }}")]),
    "undefined-key": (lambda t: t.replace("{{ runner.max_epochs }}", "{{ runner.max_epoch }}"), "template_undefined",
                      lambda t: ["max_epoch", line_of(t, "{{ runner.max_epochs }}")]),
    "not-terratorch": (lambda t: "name: {{ run_dir }}\nsteps: [1, 2]\n", "template_not_terratorch",
                       lambda t: ["trainer", "data", "model"]),
    "outputs-elsewhere": (lambda t: t.replace("{{ run_dir }}/checkpoints", "/tmp/elsewhere"), "template_outputs",
                          lambda t: ["dirpath", "/tmp/elsewhere"]),
    "does-not-build": (lambda t: t.replace("backbone: timm_resnet18", "backbone: timm_resnet9000"),
                       "template_build_failed", lambda t: ["resnet9000"]),
}


def _run_bad(setup: dict[str, Any], case: str) -> dict[str, Any]:
    change, _, _ = BAD[case]
    folder = setup["root"] / f"bad-{case}"
    folder.mkdir()
    spec = {"name": f"bad {case}", "content": change(setup["text"]), "dataset_id": setup["dataset_id"],
            "schema": SCHEMA}
    (folder / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(engine_command(setup["workspace"], "template-import", str(folder / "spec.json")),
                          capture_output=True, text=True, env=engine_env(), cwd=str(folder), timeout=300)
    events, bad = parse_stdout(proc.stdout)
    return {"returncode": proc.returncode, "events": events, "bad": bad, "stderr": proc.stderr[-2000:]}


@pytest.fixture(scope="module")
def bad_runs(setup: dict[str, Any]) -> dict[str, Future]:
    """Started before the main flow, collected after it."""
    pool = ThreadPoolExecutor(max_workers=3)
    futures = {case: pool.submit(_run_bad, setup, case) for case in BAD}
    pool.shutdown(wait=False)
    return futures


def _templates(workspace: Path) -> list[dict[str, Any]]:
    return run_ok("catalog", None, workspace).result["summary"]["templates"]


def test_import_list_tune_export_import_delete(setup, bad_runs):
    workspace, dataset_id = setup["workspace"], setup["dataset_id"]
    spec = {"name": "water resnet", "description": "from a dry run", "path": str(setup["root"] / "water.yaml.j2"),
            "schema": SCHEMA, "dataset_id": dataset_id, "purpose": "Segmentation"}
    imported = run_ok("template-import", spec, workspace).result
    template_id = imported["summary"]["id"]
    folder = Path(imported["outputs"]["template_dir"])
    assert folder == workspace / "templates" / template_id
    assert (folder / "content.yaml.j2").read_text() == setup["text"]
    record = json.loads((folder / "template.json").read_text())
    assert record["purpose"] == "Segmentation" and record["model_params"] == SCHEMA and record["user_defined"]
    assert record["extra_info"] == {"runtime_image": "quay.io/geospatial-studio/terratorch:latest",
                                    "model_category": "resnet", "model_framework": "terratorch-v2"}
    assert record["validation"]["model_class"].endswith("SemanticSegmentationTask")
    assert record["validation"]["variables"] == ["data", "run_dir", "runner"]

    listed = {t["id"]: t for t in _templates(workspace)}
    assert listed[template_id]["user_defined"] is True and listed[template_id]["model_params"] == SCHEMA
    assert "timm_resnet_seg" in listed and not listed["timm_resnet_seg"].get("user_defined")
    again = run_engine("template-import", spec, workspace)
    assert again.error["code"] == "template_name_taken" and template_id in again.error["message"]

    # export (the Studio's template JSON, and a zip); the export is imported under another name while a tune trains
    exported = run_ok("template-export", {"id": template_id, "output_path": str(setup["root"] / "water.json")},
                      workspace).result
    body = json.loads(Path(exported["outputs"]["path"]).read_text())
    assert body["name"] == "water resnet" and body["model_params"] == SCHEMA and body["purpose"] == "Segmentation"
    run_ok("template-export", {"id": "water resnet", "output_path": str(setup["root"] / "water.zip")}, workspace)
    with ThreadPoolExecutor(max_workers=1) as pool:
        copying = pool.submit(run_ok, "template-import", {"name": "water resnet copy", "dataset_id": dataset_id,
                                                          "path": str(setup["root"] / "water.json")}, workspace)

        # a tune by the template's name; its own parameter and a built-in one both reach the config
        tune = tune_payload(dataset_id, max_epochs=2, name="from-user-template")
        tune["tune_template_id"] = "water resnet"
        tune["model_parameters"] = {"runner": {"max_epochs": 1}, "data": {"batch_size": 2}}
        done = run_ok("tune", tune, workspace, timeout=600).result
        copy = copying.result(timeout=600).result["summary"]
    tune_dir = Path(done["outputs"]["tune_dir"])
    assert done["summary"]["status"] == "Finished" and done["summary"]["epochs_run"] == 1
    kept = json.loads((tune_dir / "tune.json").read_text())
    assert kept["tune_type"] == "user-defined" and kept["train_options"]["tune_type"] == "user-defined"
    assert kept["tune_template_id"] == template_id
    config = (tune_dir / "config.yaml").read_text()
    assert "max_epochs: 1\n" in config and "batch_size: 2\n" in config and str(tune_dir) in config
    assert (tune_dir / kept["checkpoint"]).is_file() and (tune_dir / "config_deploy.yaml").is_file()
    too_many = run_engine("tune", {**tune, "model_parameters": {"runner": {"max_epochs": 4}}}, workspace)
    assert too_many.error["code"] == "invalid_parameter" and "1 to 3" in too_many.error["message"]

    assert copy["purpose"] == "Segmentation" and copy["model_params"] == SCHEMA and copy["id"] != template_id
    assert (workspace / "templates" / copy["id"] / "content.yaml.j2").read_text() == setup["text"]
    from_zip = run_engine("template-import", {"name": "water resnet", "dataset_id": dataset_id,
                                              "path": str(setup["root"] / "water.zip")}, workspace)
    assert from_zip.error["code"] == "template_name_taken"  # the zip is read (name checked after reading)

    # delete both; the tune trained from one stays
    for ident in (template_id, copy["id"]):
        run_ok("delete", {"kind": "templates", "id": ident}, workspace)
    assert not {template_id, copy["id"]} & {t["id"] for t in _templates(workspace)}
    assert (tune_dir / "tune.json").is_file()
    gone = run_engine("template-export", {"id": template_id, "output_path": str(setup["root"] / "x.json")}, workspace)
    assert gone.error["code"] == "unknown_template"


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_template_is_refused_naming_the_problem(case, setup, bad_runs):
    run = bad_runs[case].result(timeout=600)
    _, code, words = BAD[case]
    events = run["events"]
    errors = [e for e in events if e["event"] == "error"]
    describe = f"exit {run['returncode']}; {json.dumps(events[-2:])[:1500]}; stderr: {run['stderr'][-800:]}"
    assert not run["bad"] and len(errors) == 1 and events[-1] is errors[0], describe
    assert errors[0]["code"] == code and run["returncode"] == EXIT_INVALID_SPEC, describe
    for word in words(setup["text"]):
        assert word in errors[0]["message"], describe
    assert errors[0]["hint"], describe
