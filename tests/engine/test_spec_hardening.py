"""Issue 9, spec side: usage errors, non-finite numbers, bounds, tiling minimums, suffixes and ids, unknown fields,
and what the bad-input table found on the way (over-long ids and paths, endpoint URLs, deep JSON, Lightning options).

Each test runs the real engine CLI; every case here stops at validation (a fraction of a second, no torch import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import EXIT_INVALID_SPEC, EXIT_USAGE, engine_command, engine_env, parse_stdout, run_engine


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
        ("onboard", _onboarding(tmp_path, training_params={"class_weights": [1.0, nan]}),
         "training_params.class_weights.1"),
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


# --- #3: bounds on every numeric option, the message gives the allowed range -----------------------------------

def test_numeric_options_have_bounds_and_the_message_gives_the_range(tmp_path: Path):
    ws = tmp_path / "ws"
    cases = [  # command, spec, field named, text of the allowed range
        ("onboard", _onboarding(tmp_path, onboarding_options__chip_size=1e12), "onboarding_options.chip_size",
         "16 to 8192"),
        ("onboard", _onboarding(tmp_path, onboarding_options__chip_size=4), "onboarding_options.chip_size",
         "16 to 8192"),
        ("onboard", _onboarding(tmp_path, data_sources__0__bands__0__index=10**9), "data_sources.0.bands.0.index",
         "0 to 65535"),
        ("onboard", _onboarding(tmp_path, data_sources__0__bands__0__scaling_factor=0),
         "data_sources.0.bands.0.scaling_factor", "more than 0"),
        ("onboard", _onboarding(tmp_path, onboarding_options__seed=-1), "onboarding_options.seed", "0 to"),
        ("onboard", _onboarding(tmp_path, onboarding_options__split=[2, -0.5, -0.5]), "onboarding_options.split.0",
         "0 to 1"),
        ("onboard", _onboarding(tmp_path, label_categories__1__weight=-3), "label_categories.1.weight", "0 to"),
        ("infer", _infer(batch_size=10**9), "batch_size", "1 to 1024"),
        ("tune", {**_tune(), "train_options": {"accelerator": "cpu", "devices": 10**6}}, "train_options.devices",
         "1 to 64"),
        ("search", {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [0, 0, 1, 1],
                    "date_start": "2020-01-01", "date_end": "2020-01-02", "pre_days": 10**9}, "pre_days", "0 to 365"),
    ]
    for command, spec, field, allowed in cases:
        error = _refused(run_engine(command, spec, ws), field)
        assert allowed in error["message"], (field, allowed, error["message"])


def test_template_parameters_have_bounds_and_the_message_gives_the_range(tmp_path: Path):
    ws = tmp_path / "ws"
    cases = [
        ({"data": {"batch_size": 1e9}}, "model_parameters.data.batch_size", "1 to 1024"),
        ({"data": {"batch_size": 0}}, "model_parameters.data.batch_size", "1 to 1024"),
        ({"runner": {"max_epochs": 10**9}}, "model_parameters.runner.max_epochs", "1 to 10000"),
        ({"optimizer": {"lr": 1e6}}, "model_parameters.optimizer.lr", "more than 0 and at most 10"),
        ({"optimizer": {"lr": 0}}, "model_parameters.optimizer.lr", "more than 0 and at most 10"),
        ({"data": {"batch_size": "1e400"}}, "model_parameters.data.batch_size", "integer"),
        ({"model": {"decode_head": {"channels": 10**7}}}, "model_parameters.model.decode_head.channels", "8 to 4096"),
    ]
    for params, field, allowed in cases:
        error = _refused(run_engine("tune", _tune(**params), ws), field, "invalid_parameter")
        assert allowed in error["message"] + error["hint"], (field, allowed, error)


# --- #9: schema minimums for crop and stride (and tile sizes) --------------------------------------------------

def test_tiling_and_crop_minimums(tmp_path: Path):
    ws = tmp_path / "ws"
    tiled = "model_parameters.model.tiled_inference_parameters."
    cases = [
        ({"model": {"tiled_inference_parameters": {"h_stride": 0}}}, tiled + "h_stride"),
        ({"model": {"tiled_inference_parameters": {"w_stride": -8}}}, tiled + "w_stride"),
        ({"model": {"tiled_inference_parameters": {"h_crop": 0}}}, tiled + "h_crop"),
        ({"model": {"tiled_inference_parameters": {"w_crop": 10**6}}}, tiled + "w_crop"),
        ({"model": {"tiled_inference_parameters": {"h_crop": 64, "h_stride": 128}}}, tiled + "h_stride"),
        ({"data": {"crop_size": 5}}, "model_parameters.data.crop_size"),
        ({"data": {"crop_size": 10**6}}, "model_parameters.data.crop_size"),
    ]
    for params, field in cases:
        _refused(run_engine("tune", _tune(**params), ws), field, "invalid_parameter")
    # 0 still means "whole chips" for crop_size
    run = run_engine("tune", _tune(data={"crop_size": 0}), ws)
    assert run.error["code"] == "unknown_dataset", run.describe()


# --- #2 (spec side): a suffix with a path separator or glob characters is refused, naming the field; ids are ids --

def test_path_like_suffixes_refused_naming_the_field(tmp_path: Path):
    ws = tmp_path / "ws"
    from conftest import TRAIN_DIR

    cases = [
        ("onboard", _onboarding(tmp_path, label_suffix="/USA_905409_S1Hand.tif"), "label_suffix"),
        ("onboard", _onboarding(tmp_path, data_sources__0__file_suffix="**.tif"), "data_sources.0.file_suffix"),
        ("onboard", _onboarding(tmp_path, data_sources__0__file_suffix="_S1[H]and.tif"), "data_sources.0.file_suffix"),
        ("onboard", _onboarding(tmp_path, label_suffix="..\\x_LabelHand.tif"), "label_suffix"),
        ("prescan", {"dataset_url": str(TRAIN_DIR), "label_suffix": "_Label?and.tif",
                     "training_data_suffixes": ["_S1Hand.tif"]}, "label_suffix"),
        ("prescan", {"dataset_url": str(TRAIN_DIR), "label_suffix": "_LabelHand.tif",
                     "training_data_suffixes": ["../train/*_S1Hand.tif"]}, "training_data_suffixes.0"),
    ]
    for command, spec, field in cases:
        error = _refused(run_engine(command, spec, ws), field)
        assert "suffix" in error["message"], error


def test_ids_are_ids_never_paths(tmp_path: Path):
    ws = tmp_path / "ws"
    cases = [
        ("tune", {**_tune(), "dataset_id": "../datasets/some-dataset"}, "dataset_id"),
        ("tune", {**_tune(), "dataset_id": "/etc"}, "dataset_id"),
        ("infer", _infer(fine_tuning_id="../tunes/some-tune"), "fine_tuning_id"),
        ("infer", _infer(fine_tuning_id="", model_id="..", model_display_name=""), "model_id"),
        ("infer", _infer(fine_tuning_id="", model_display_name="a/../../b"), "model_display_name"),
    ]
    for command, spec, field in cases:
        error = _refused(run_engine(command, spec, ws), field)
        assert "not a path" in error["message"], error


# --- unknown fields: still accepted, but warned with a log event naming the nearest known name ----------------

def test_unknown_fields_warned_with_the_nearest_known_name(tmp_path: Path):
    ws = tmp_path / "ws"
    payload = _onboarding(tmp_path)
    payload["onboarding_options"]["chipsize"] = 256
    payload["data_sources"][0]["bands"][0]["scalling_factor"] = 1
    payload["dataset_nmae"] = "typo"
    payload["studio_only_key"] = {"anything": 1}
    run = run_engine("onboard", payload, ws)
    assert run.error["code"] == "dataset_source", run.describe()  # accepted: it went on to read the (missing) source
    warnings = [e["message"] for e in run.of("log") if e["level"] == "warning"]
    expected = {"onboarding_options.chipsize": "chip_size", "data_sources.0.bands.0.scalling_factor": "scaling_factor",
                "dataset_nmae": "dataset_name"}
    for field, nearest in expected.items():
        assert [w for w in warnings if field in w and f"did you mean {nearest}" in w], (field, warnings)
    assert [w for w in warnings if "studio_only_key" in w and "did you mean" not in w], warnings
    assert len(warnings) == 4, warnings
    # a clean spec draws no warning
    run = run_engine("delete", {"kind": "datasets", "id": "x"}, ws)
    assert run.error["code"] == "not_found" and not [e for e in run.of("log") if e["level"] == "warning"]
    run = run_engine("delete", {"kind": "datasets", "idd": "x", "id": "x"}, ws)
    assert [e for e in run.of("log") if e["level"] == "warning" and "did you mean id" in e["message"]], run.events


def test_a_library_calling_sys_exit_still_ends_with_one_error_event(tmp_path: Path):
    """Code inside a command that calls sys.exit (a CLI library, say) is reported, not a silent exit."""
    script = ("import sys\n"
              "import geostudio_plugin.engine.listing as listing\n"
              "listing.run = lambda spec, workspace: sys.exit(7)\n"
              "from geostudio_plugin.engine.__main__ import main\n"
              f"sys.exit(main(['--workspace', {str(tmp_path / 'ws')!r}, 'list']))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=engine_env(),
                          cwd=str(tmp_path), timeout=60)
    events, bad = parse_stdout(proc.stdout)
    assert not bad and proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert [e["event"] for e in events][-1:] == ["error"] and events[-1]["code"] == "internal_error", events
    assert "sys.exit(7)" in events[-1]["message"], events


# --- found while building the table: over-long ids and paths, NUL characters, malformed URLs ---------------------

def test_over_long_ids_and_paths_and_malformed_urls_are_spec_errors(tmp_path: Path):
    ws = tmp_path / "ws"
    long_path = "/x" * 3000
    cases = [
        ("delete", {"kind": "datasets", "id": "a" * 5000}, "id"),
        ("tune", {**_tune(), "dataset_id": "a" * 5000}, "dataset_id"),
        ("infer", _infer(fine_tuning_id="a" * 5000), "fine_tuning_id"),
        ("onboard", _onboarding(tmp_path, dataset_url=long_path), "dataset_url"),
        ("onboard", _onboarding(tmp_path, dataset_url="/tmp/" + "n" * 300 + "/data"), "dataset_url"),
        ("onboard", _onboarding(tmp_path, dataset_url="http://[::1"), "dataset_url"),
        ("onboard", _onboarding(tmp_path, dataset_url="/tmp/a\u0000b"), "dataset_url"),
        ("prescan", {"dataset_url": long_path, "label_suffix": "_L.tif", "training_data_suffixes": ["_S.tif"]},
         "dataset_url"),
        ("infer", _infer(spatial_domain={"urls": ["/tmp/a\u0000b.tif"]}), "spatial_domain.urls.0"),
        ("infer", _infer(output_path=long_path), "output_path"),
    ]
    for command, spec, field in cases:
        _refused(run_engine(command, spec, ws), field)


def test_deeply_nested_json_booleans_as_numbers_and_bad_studio_dates(tmp_path: Path):
    ws = tmp_path / "ws"
    spec = tmp_path / "deep.json"
    spec.write_text("[" * 100000 + "]" * 100000)
    run = run_engine("tune", spec, ws)
    assert run.returncode == EXIT_USAGE and run.error["code"] == "spec_not_json", run.describe()
    assert "nested" in run.error["message"]
    _refused(run_engine("tune", _tune(data={"batch_size": True}), ws), "model_parameters.data.batch_size",
             "invalid_parameter")
    _refused(run_engine("tune", _tune(optimizer={"lr": False}), ws), "model_parameters.optimizer.lr",
             "invalid_parameter")
    error = _refused(run_engine("tune", _tune(optimizer={"lr": 10**400}), ws), "model_parameters.optimizer.lr",
                     "invalid_parameter")
    assert len(error["message"]) < 300, error["message"]
    search = {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [0, 0, 1, 1],
              "dates": ["2020-01-01_bad"]}
    _refused(run_engine("search", search, ws), "dates")


def test_endpoint_urls_are_checked_in_every_spec(tmp_path: Path):
    ws = tmp_path / "ws"
    cases = [
        ("catalog", {"discover": True, "endpoints": {"IBMResearchSTAC": "http://[::1"}}, "endpoints.IBMResearchSTAC"),
        ("catalog", {"endpoints": {"sentinel_aws": "ftp://example.org"}}, "endpoints.sentinel_aws"),
        ("search", {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [0, 0, 1, 1],
                    "date_start": "2020-01-01", "date_end": "2020-01-02", "endpoint": "http://[::1"}, "endpoint"),
        ("onboard", _onboarding(tmp_path, onboarding_options__endpoint="ftp://x"), "onboarding_options.endpoint"),
        ("onboard", _onboarding(tmp_path, onboarding_options__endpoints={"sentinel_aws": "stac.example"}),
         "onboarding_options.endpoints.sentinel_aws"),
    ]
    for command, spec, field in cases:
        _refused(run_engine(command, spec, ws), field)


def test_train_options_that_lightning_would_refuse_mid_run_are_spec_errors(tmp_path: Path):
    ws = tmp_path / "ws"
    for options, field in (({"precision": "banana"}, "train_options.precision"),
                           ({"limit_train_batches": 2.5}, "train_options.limit_train_batches")):
        _refused(run_engine("tune", {**_tune(), "train_options": {"accelerator": "cpu", **options}}, ws), field)
    run = run_engine("tune", {**_tune(), "train_options": {"precision": 16, "limit_train_batches": 3}}, ws)
    assert run.error["code"] == "unknown_dataset", run.describe()  # valid: it went on to look for the dataset


def test_a_modality_tag_names_a_folder_inside_the_dataset(tmp_path: Path):
    ws = tmp_path / "ws"
    for tag in ("..", ".", ".hidden"):
        _refused(run_engine("onboard", _onboarding(tmp_path, data_sources__0__modality_tag=tag), ws),
                 "data_sources.0.modality_tag")
