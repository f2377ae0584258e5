"""Issue 9's table: malformed specs and inputs across every command, run through the real engine CLI.

Each case must end with exactly one ``error`` event carrying its documented code, exit with that code's
status from ``engine/errors.py`` (never 1, the status of a bug), emit no ``result``, and leave nothing
behind in the workspace (its tree is compared before and after; failure records under ``failed/`` are
the engine's log of failed attempts and are ignored). Nearly every case stops at validation, before
torch is imported (about 0.2 s each), so the cases run side by side in one thread pool: well under a minute
on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest
from conftest import (
    DEMO_ONBOARD, EXIT_INTERNAL, EXIT_OK, TRAIN_DIR, TRAIN_STEMS, engine_command, engine_env, parse_stdout,
)

from geostudio_plugin.engine.errors import CODES
from geostudio_plugin.engine.wire import FAILED_DIR

NAN, INF = float("nan"), float("inf")
Spec = Union[dict, str, bytes, None, Callable[[Path], Any]]


@dataclass
class Case:
    id: str
    command: Optional[str]  # None: the arguments are all in ``args``
    spec: Spec  # a dict (written as JSON, NaN/Infinity literals allowed), raw text or bytes, or folder -> one of those
    code: str
    args: list[str] = field(default_factory=list)  # extra command-line arguments ("{folder}": the case's folder)
    prepare: Optional[Callable[[Path], None]] = None  # builds input data in the case's folder (beside ws)
    xfail: str = ""

    @property
    def exit(self) -> Optional[int]:
        """The documented exit status of the code (None for a code not in engine/errors.py yet)."""
        return CODES[self.code].exit if self.code in CODES else None


# --- payload builders ----------------------------------------------------------------------------------------

def onboarding(folder: Union[str, Path] = "/no/such/folder", **changes: Any) -> dict[str, Any]:
    """The demo onboarding payload; ``changes`` keys are paths with '__' between parts (list items by index)."""
    payload = json.loads(DEMO_ONBOARD.read_text())
    payload["dataset_url"] = str(folder)
    payload["onboarding_options"]["chip_size"] = None
    for path, value in changes.items():
        target, keys = payload, path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return payload


def tune(dataset_id: str = "no-such-dataset", **changes: Any) -> dict[str, Any]:
    spec = {"name": "bad-input", "dataset_id": dataset_id, "base_model_id": "timm_resnet18",
            "tune_template_id": "timm_resnet_seg", "model_parameters": {}, "train_options": {"accelerator": "cpu"}}
    spec.update(changes)
    return spec


def infer(**changes: Any) -> dict[str, Any]:
    spec = {"fine_tuning_id": "no-such-tune", "spatial_domain": {"urls": [str(TRAIN_DIR / "x.tif")]}}
    spec.update(changes)
    return spec


AREA_SOURCE = {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "modality_tag": "S2L2A",
               "file_suffix": ".tif", "bands": [{"index": 0, "band_name": "red"}]}


def infer_area(**changes: Any) -> dict[str, Any]:
    spec = {"fine_tuning_id": "no-such-tune", "spatial_domain": {"bbox": [[-88.19, 15.77, -88.15, 15.84]]},
            "temporal_domain": ["2018-09-14"]}
    spec.update(changes)
    return spec


def availability(**changes: Any) -> dict[str, Any]:
    spec = {"model_input_data_spec": [AREA_SOURCE], "spatial_domain": {"bbox": [[-88.19, 15.77, -88.15, 15.84]]},
            "temporal_domain": ["2018-09-14"]}
    spec.update(changes)
    return spec


def search(**changes: Any) -> dict[str, Any]:
    spec = {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [-95.0, 38.6, -94.9, 38.7],
            "date_start": "2020-06-01", "date_end": "2020-06-30"}
    spec.update(changes)
    return spec


def fetch(**changes: Any) -> dict[str, Any]:
    spec = {"connector": "sentinel_aws", "collection": "sentinel-2-l2a", "bbox": [-95.0, 38.6, -94.9, 38.7],
            "dates": ["2020-06-05"], "bands": ["red"]}
    spec.update(changes)
    return spec


def params(**groups: Any) -> dict[str, Any]:
    return tune(model_parameters=groups)


# --- input data built per case -------------------------------------------------------------------------------

def _write(path: Path, array: Any, crs: Optional[str] = "EPSG:32633", driver: str = "GTiff", **profile: Any) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    array = np.asarray(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver=driver, width=array.shape[2], height=array.shape[1], count=array.shape[0],
                       dtype=array.dtype, crs=crs, transform=from_origin(500000, 4000000, 10, 10), **profile) as dst:
        dst.write(array)


def tiny_scenes(folder: Path) -> None:
    """Three 4 x 4 pixel scenes: smaller than the smallest chip a template takes (issue 9 #5)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(3):
        _write(folder / "data" / f"t{i}_S1Hand.tif", rng.normal(size=(2, 4, 4)).astype("float32"))
        _write(folder / "data" / f"t{i}_LabelHand.tif", (rng.random((1, 4, 4)) > 0.5).astype("int16"))


def sample_copy(folder: Path) -> None:
    import shutil

    (folder / "data").mkdir(parents=True)
    for stem in TRAIN_STEMS[:3]:
        for suffix in ("_S1Hand.tif", "_LabelHand.tif"):
            shutil.copyfile(TRAIN_DIR / f"{stem}{suffix}", folder / "data" / f"{stem}{suffix}")


def unpaired(folder: Path) -> None:
    """One image without its label."""
    sample_copy(folder)
    (folder / "data" / f"{TRAIN_STEMS[0]}_LabelHand.tif").unlink()


def png_as_tif(folder: Path) -> None:
    """A PNG renamed .tif among real pairs."""
    import numpy as np

    sample_copy(folder)
    target = folder / "data" / f"{TRAIN_STEMS[0]}_S1Hand.tif"
    target.unlink()
    _write(folder / "x.png", np.zeros((1, 64, 64), np.uint8), crs=None, driver="PNG")
    (folder / "x.png").rename(target)


def foreign_labels(folder: Path) -> None:
    """Labels with the value 7, which no label category names."""
    import numpy as np

    rng = np.random.default_rng(1)
    for i in range(3):
        _write(folder / "data" / f"f{i}_S1Hand.tif", rng.normal(size=(2, 64, 64)).astype("float32"))
        _write(folder / "data" / f"f{i}_LabelHand.tif", np.full((1, 64, 64), 7, "int16"))


def broken_tune(folder: Path) -> None:
    (folder / "ws" / "tunes" / "t-1").mkdir(parents=True)
    (folder / "ws" / "tunes" / "t-1" / "tune.json").write_text("{broken")


def multimodal_tune(folder: Path) -> None:
    """A finished S2 + S1 model as far as inference reads it before loading weights (its record and deploy config)."""
    tune = folder / "ws" / "tunes" / "mm-1"
    tune.mkdir(parents=True)
    spec = [{"modality_tag": "S2L1C", "file_suffix": "_S2Hand.tif"},
            {"modality_tag": "S1GRD", "file_suffix": "_S1Hand.tif"}]
    (tune / "tune.json").write_text(json.dumps({
        "tune_id": "mm-1", "name": "mm-1", "status": "Finished", "classes": [{"index": 0, "id": 0, "name": "dry"}],
        "checkpoint": "checkpoints/best.ckpt", "deploy_config": "config_deploy.yaml", "model_input_data_spec": spec}))
    (tune / "config_deploy.yaml").write_text(json.dumps({
        "model": {"class_path": "terratorch.tasks.SemanticSegmentationTask", "init_args": {}},
        "data": {"class_path": "terratorch.datamodules.GenericMultiModalDataModule", "init_args": {
            "modalities": ["S2L1C", "S1GRD"], "means": {"S2L1C": [0.0], "S1GRD": [0.0, 0.0]},
            "stds": {"S2L1C": [1.0], "S1GRD": [1.0, 1.0]}}}}))


def hand_edited_dataset(folder: Path) -> None:
    (folder / "ws" / "datasets" / "d-1").mkdir(parents=True)
    (folder / "ws" / "datasets" / "d-1" / "dataset.json").write_text(json.dumps({"dataset_id": "d-1"}))


def user_collections(text: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "ws" / "catalog").mkdir(parents=True)
        (folder / "ws" / "catalog" / "collections.json").write_text(text)
    return write


def spec_folder(folder: Path) -> None:
    (folder / "a-folder.json").mkdir()


DATA = "{data}"  # stands for <case folder>/data in a spec's dataset_url


# --- the table -----------------------------------------------------------------------------------------------

CASES = [
    # the command line and the spec file (every command)
    Case("cli-unknown-command", None, None, "usage", ["frobnicate"]),
    Case("cli-missing-spec", None, None, "usage", ["tune"]),
    Case("cli-extra-argument", None, None, "usage", ["list", "a", "b"]),
    Case("cli-unknown-option", None, None, "usage", ["--bogus", "list"]),
    Case("cli-no-command", None, None, "no_command", []),
    Case("spec-missing-file", "onboard", None, "spec_unreadable", ["/no/such/spec.json"]),
    Case("spec-a-folder", "infer", None, "spec_unreadable", ["{folder}/a-folder.json"], prepare=spec_folder),
    Case("spec-not-utf8", "tune", b"\xff\xfe{\x00", "spec_unreadable"),
    Case("spec-not-json", "search", '{"bbox": [1, 2,', "spec_not_json"),
    Case("spec-json-array", "fetch", "[1, 2, 3]", "invalid_spec"),
    Case("spec-json-null", "onboard", "null", "invalid_spec"),
    Case("spec-json-number", "delete", "NaN", "invalid_spec"),
    Case("spec-nested-too-deeply", "tune", "[" * 100000 + "]" * 100000, "spec_not_json"),
    # catalog
    Case("catalog-timeout-infinite-text", "catalog", {"timeout_s": "Infinity"}, "invalid_spec"),
    Case("catalog-timeout-huge", "catalog", {"timeout_s": 1e300}, "invalid_spec"),
    Case("catalog-bool-not-bool", "catalog", {"check_access": "maybe"}, "invalid_spec"),
    Case("catalog-endpoints-wrong-type", "catalog", {"endpoints": ["http://x"]}, "invalid_spec"),
    Case("catalog-endpoint-bad-url", "catalog", {"discover": True, "endpoints": {"IBMResearchSTAC": "http://[::1"}},
         "invalid_spec"),
    Case("catalog-user-collections-not-json", "catalog", None, "catalog_file_invalid",
         prepare=user_collections("{broken")),
    Case("catalog-user-collections-null", "catalog", None, "catalog_file_invalid", prepare=user_collections("null")),
    Case("catalog-user-collections-number", "catalog", None, "catalog_file_invalid",
         prepare=user_collections('{"collections": 5}')),
    Case("catalog-user-collections-entry-text", "catalog", None, "catalog_file_invalid",
         prepare=user_collections('["sentinel_aws"]')),
    Case("catalog-timeout-bigint", "catalog", {"timeout_s": 10**400}, "invalid_spec"),
    # prescan
    Case("prescan-glob-label-suffix", "prescan", {"dataset_url": str(TRAIN_DIR), "label_suffix": "**.tif",
                                                  "training_data_suffixes": ["_S1Hand.tif"]}, "invalid_spec"),
    Case("prescan-path-data-suffix", "prescan", {"dataset_url": str(TRAIN_DIR), "label_suffix": "_LabelHand.tif",
                                                 "training_data_suffixes": ["/USA_905409_S1Hand.tif"]},
         "invalid_spec"),
    Case("prescan-no-suffixes", "prescan", {"dataset_url": str(TRAIN_DIR), "label_suffix": "_LabelHand.tif"},
         "invalid_spec"),
    Case("prescan-missing-source", "prescan", {"dataset_url": "/no/such/folder", "label_suffix": "_LabelHand.tif",
                                               "training_data_suffixes": ["_S1Hand.tif"]}, "dataset_source"),
    Case("prescan-url-too-long", "prescan", {"dataset_url": "/x" * 3000, "label_suffix": "_LabelHand.tif",
                                             "training_data_suffixes": ["_S1Hand.tif"]}, "invalid_spec"),
    Case("prescan-nan-in-payload", "prescan", onboarding(TRAIN_DIR, onboarding_options__split=[NAN, 0.5, 0.5]),
         "invalid_spec"),
    # onboard: numbers
    Case("onboard-chip-huge", "onboard", onboarding(onboarding_options__chip_size=1e12), "invalid_spec"),
    Case("onboard-chip-tiny", "onboard", onboarding(onboarding_options__chip_size=1), "invalid_spec"),
    Case("onboard-chip-nan", "onboard", onboarding(onboarding_options__chip_size=NAN), "invalid_spec"),
    Case("onboard-chip-text", "onboard", onboarding(onboarding_options__chip_size="big"), "invalid_spec"),
    Case("onboard-chip-fraction", "onboard", onboarding(onboarding_options__chip_size=128.5), "invalid_spec"),
    Case("onboard-split-nan", "onboard", onboarding(onboarding_options__split=[NAN, 0.5, 0.5]), "invalid_spec"),
    Case("onboard-split-two", "onboard", onboarding(onboarding_options__split=[0.5, 0.5]), "invalid_spec"),
    Case("onboard-split-negative", "onboard", onboarding(onboarding_options__split=[1.5, -0.25, -0.25]),
         "invalid_spec"),
    Case("onboard-weight-infinite", "onboard", onboarding(label_categories__1__weight=INF), "invalid_spec"),
    Case("onboard-class-weights-nan", "onboard", onboarding(training_params={"class_weights": [NAN, 1.0]}),
         "invalid_spec"),
    Case("onboard-scale-minus-infinity", "onboard", onboarding(data_sources__0__bands__0__scaling_factor=-INF),
         "invalid_spec"),
    Case("onboard-scale-zero", "onboard", onboarding(data_sources__0__bands__0__scaling_factor=0), "invalid_spec"),
    Case("onboard-band-negative", "onboard", onboarding(data_sources__0__bands__0__index=-1), "invalid_spec"),
    Case("onboard-band-huge", "onboard", onboarding(data_sources__0__bands__0__index=10**12), "invalid_spec"),
    Case("onboard-seed-huge", "onboard", onboarding(onboarding_options__seed=10**30), "invalid_spec"),
    Case("onboard-label-id-text", "onboard", onboarding(label_categories__1__id="one"), "invalid_spec"),
    Case("onboard-opacity-big", "onboard", onboarding(label_categories__1__opacity=5), "invalid_spec"),
    # onboard: names, suffixes, structure
    Case("onboard-label-suffix-path", "onboard", onboarding(label_suffix="/USA_905409_S1Hand.tif"), "invalid_spec"),
    Case("onboard-data-suffix-glob", "onboard", onboarding(data_sources__0__file_suffix="**.tif"), "invalid_spec"),
    Case("onboard-data-suffix-backslash", "onboard", onboarding(data_sources__0__file_suffix="..\\x.tif"),
         "invalid_spec"),
    Case("onboard-modality-tag-path", "onboard", onboarding(data_sources__0__modality_tag="../S1"), "invalid_spec"),
    Case("onboard-modality-tag-dots", "onboard", onboarding(data_sources__0__modality_tag=".."), "invalid_spec"),
    Case("onboard-no-sources", "onboard", onboarding(data_sources=[]), "invalid_spec"),
    Case("onboard-bands-wrong-type", "onboard", onboarding(data_sources__0__bands="VV,VH"), "invalid_spec"),
    Case("onboard-empty-name", "onboard", onboarding(dataset_name=""), "invalid_spec"),
    Case("onboard-colour-name", "onboard", onboarding(label_categories__1__color="red"), "invalid_spec"),
    Case("onboard-purpose-unknown", "onboard", onboarding(purpose="Classification"), "invalid_spec"),
    Case("onboard-options-not-object", "onboard", onboarding(onboarding_options="fast"), "invalid_spec"),
    Case("onboard-url-too-long", "onboard", onboarding("/x" * 3000), "invalid_spec"),
    Case("onboard-url-name-too-long", "onboard", onboarding("/tmp/" + "n" * 300 + "/data"), "invalid_spec"),
    Case("onboard-url-bad-ipv6", "onboard", onboarding("http://[::1"), "invalid_spec"),
    Case("onboard-url-nul", "onboard", onboarding("/tmp/a\u0000b"), "invalid_spec"),
    Case("onboard-endpoint-ftp", "onboard", onboarding(onboarding_options__endpoint="ftp://example.org"),
         "invalid_spec"),
    Case("onboard-one-class", "onboard", onboarding(label_categories=[{"id": 1, "name": "Water"}]), "invalid_spec"),
    # onboard: the data
    Case("onboard-missing-source", "onboard", onboarding("/no/such/folder"), "dataset_source"),
    Case("onboard-tiny-scenes", "onboard", onboarding(DATA), "dataset_dimensions", prepare=tiny_scenes),
    Case("onboard-unpaired", "onboard", onboarding(DATA), "dataset_pairing", prepare=unpaired),
    Case("onboard-suffix-matches-nothing", "onboard", onboarding(DATA, data_sources__0__file_suffix="_S2Hand.tif"),
         "dataset_files", prepare=sample_copy),
    Case("onboard-png-as-tif", "onboard", onboarding(DATA), "dataset_files", prepare=png_as_tif),
    Case("onboard-label-values-unknown", "onboard", onboarding(DATA), "dataset_params", prepare=foreign_labels),
    # tune
    Case("tune-dataset-id-path", "tune", tune("../datasets/some-dataset"), "invalid_spec"),
    Case("tune-dataset-id-huge", "tune", tune("a" * 5000), "invalid_spec"),
    Case("tune-dataset-id-absolute", "tune", tune("/etc"), "invalid_spec"),
    Case("tune-name-short", "tune", tune(name="x"), "invalid_spec"),
    Case("tune-device-unknown", "tune", tune(device="tpu"), "invalid_spec"),
    Case("tune-devices-huge", "tune", tune(train_options={"devices": 10**6}), "invalid_spec"),
    Case("tune-precision-unknown", "tune", tune(train_options={"precision": "banana"}), "invalid_spec"),
    Case("tune-limit-batches-fraction", "tune", tune(train_options={"limit_train_batches": 2.5}), "invalid_spec"),
    Case("tune-loss-unknown", "tune", params(model={"decode_head": {"loss_decode": {"type": "HingeLoss"}}}),
         "invalid_parameter"),
    Case("tune-parameters-wrong-type", "tune", tune(model_parameters=[1, 2]), "invalid_spec"),
    Case("tune-lr-infinite", "tune", params(optimizer={"lr": INF}), "invalid_spec"),
    Case("tune-lr-nan-text", "tune", params(optimizer={"lr": "nan"}), "invalid_parameter"),
    Case("tune-lr-huge", "tune", params(optimizer={"lr": 1e6}), "invalid_parameter"),
    Case("tune-batch-huge", "tune", params(data={"batch_size": 1e9}), "invalid_parameter"),
    Case("tune-batch-boolean", "tune", params(data={"batch_size": True}), "invalid_parameter"),
    Case("tune-lr-bigint", "tune", params(optimizer={"lr": 10**400}), "invalid_parameter"),
    Case("tune-batch-overflow-text", "tune", params(data={"batch_size": "1e400"}), "invalid_parameter"),
    Case("tune-epochs-zero", "tune", params(runner={"max_epochs": 0}), "invalid_parameter"),
    Case("tune-stride-zero", "tune", params(model={"tiled_inference_parameters": {"h_stride": 0}}),
         "invalid_parameter"),
    Case("tune-crop-zero", "tune", params(model={"tiled_inference_parameters": {"w_crop": 0}}), "invalid_parameter"),
    Case("tune-stride-over-crop", "tune",
         params(model={"tiled_inference_parameters": {"h_crop": 64, "h_stride": 100}}), "invalid_parameter"),
    Case("tune-random-crop-tiny", "tune", params(data={"crop_size": 3}), "invalid_parameter"),
    Case("tune-group-not-object", "tune", params(data=[4]), "invalid_parameter"),
    Case("tune-string-parameter-object", "tune", params(runner={"early_stopping_monitor": {"a": 1}}),
         "invalid_parameter"),
    Case("tune-unknown-parameter", "tune", params(runner={"max_epoch": 3}), "unknown_parameter"),
    Case("tune-unknown-dataset", "tune", tune(), "unknown_dataset"),
    Case("tune-dataset-record-edited", "tune", tune("d-1"), "record_invalid", prepare=hand_edited_dataset),
    # infer
    Case("infer-tune-id-path", "infer", infer(fine_tuning_id="../tunes/some-tune"), "invalid_spec"),
    Case("infer-tune-id-huge", "infer", infer(fine_tuning_id="a" * 5000), "invalid_spec"),
    Case("infer-input-nul", "infer", infer(spatial_domain={"urls": ["/tmp/a\u0000b.tif"]}), "invalid_spec"),
    Case("infer-output-too-long", "infer", infer(output_path="/x" * 3000), "invalid_spec"),
    Case("infer-spatial-domain-text", "infer", infer(spatial_domain="here"), "invalid_spec"),
    Case("infer-model-id-dots", "infer", infer(fine_tuning_id="", model_id=".."), "invalid_spec"),
    Case("infer-display-name-path", "infer", infer(fine_tuning_id="", model_display_name="a/../b"), "invalid_spec"),
    Case("infer-no-inputs", "infer", infer(spatial_domain={"urls": []}), "invalid_spec"),
    Case("infer-batch-zero", "infer", infer(batch_size=0), "invalid_spec"),
    Case("infer-batch-huge", "infer", infer(batch_size=10**9), "invalid_spec"),
    Case("infer-maxcc-nan", "infer", infer(maxcc=NAN), "invalid_spec"),
    Case("infer-bbox-inverted", "infer", infer(spatial_domain={"urls": ["/x.tif"], "bbox": [[1, 1, 0, 0]]}),
         "invalid_spec"),
    Case("infer-bbox-nan", "infer", infer(spatial_domain={"urls": ["/x.tif"], "bbox": [[0, 0, NAN, 1]]}),
         "invalid_spec"),
    Case("infer-output-two-inputs", "infer", infer(spatial_domain={"urls": ["/a.tif", "/b.tif"]},
                                                   output_path="/tmp/out.tif"), "invalid_spec"),
    Case("infer-device-unknown", "infer", infer(device="cuda:x"), "invalid_spec"),
    Case("infer-block-not-256-multiple", "infer", infer(block_size=300), "invalid_spec"),
    Case("infer-confidence-text", "infer", infer(confidence="maybe"), "invalid_spec"),
    Case("infer-unknown-tune", "infer", infer(), "unknown_model"),
    Case("infer-tune-record-broken", "infer", infer(fine_tuning_id="t-1"), "record_invalid", prepare=broken_tune),
    Case("infer-multimodal-one-raster", "infer",
         infer(fine_tuning_id="mm-1", spatial_domain={"urls": [str(TRAIN_DIR / "Spain_7370579_S1Hand.tif")]}),
         "modality_inputs", prepare=multimodal_tune),
    # delete
    Case("delete-id-parent", "delete", {"kind": "datasets", "id": ".."}, "invalid_spec"),
    Case("delete-id-path", "delete", {"kind": "tunes", "id": "../datasets/x"}, "invalid_spec"),
    Case("delete-id-huge", "delete", {"kind": "datasets", "id": "a" * 5000}, "invalid_spec"),
    Case("delete-kind-unknown", "delete", {"kind": "models", "id": "x"}, "invalid_spec"),
    # infer over an area and dates
    Case("infer-area-no-dates", "infer", infer_area(temporal_domain=[]), "invalid_spec"),
    Case("infer-area-date-bad", "infer", infer_area(temporal_domain=["2018-09-31"]), "invalid_spec"),
    Case("infer-area-range-reversed", "infer", infer_area(temporal_domain=["2018-09-14_2018-09-01"]), "invalid_spec"),
    Case("infer-area-polygon-not-geojson", "infer", infer_area(spatial_domain={"polygons": [{"type": "Polygon"}]}),
         "invalid_spec"),
    Case("infer-area-masking-word", "infer", infer_area(post_processing={"cloud_masking": "sometimes"}),
         "invalid_spec"),
    Case("infer-area-limit-zero", "infer", infer_area(max_area_sq_km=0), "invalid_spec"),
    Case("infer-area-endpoint-bad", "infer", infer_area(endpoints={"sentinel_aws": "ftp://x"}), "invalid_spec"),
    Case("infer-area-unknown-tune", "infer", infer_area(), "unknown_model"),
    # check-availability (all refused before any request leaves the machine)
    Case("availability-no-model", "check-availability", availability(model_input_data_spec=None), "invalid_spec"),
    Case("availability-no-area", "check-availability", availability(spatial_domain={"bbox": []}), "invalid_spec"),
    Case("availability-no-dates", "check-availability", availability(temporal_domain=[]), "invalid_spec"),
    Case("availability-maxcc-over", "check-availability", availability(maxcc=101), "invalid_spec"),
    Case("availability-unknown-tune", "check-availability", availability(fine_tuning_id="no-such-tune"),
         "unknown_model"),
    Case("availability-area-too-large", "check-availability",
         availability(spatial_domain={"bbox": [[-89.0, 15.0, -88.0, 16.0]]}), "area_too_large"),
    Case("availability-future-date", "check-availability", availability(temporal_domain=["2999-01-01"]),
         "dates_in_future"),
    Case("availability-source-without-connector", "check-availability",
         availability(model_input_data_spec=[{**AREA_SOURCE, "connector": ""}]), "model_input_missing"),
    Case("delete-not-there", "delete", {"kind": "inferences", "id": "nothing-here"}, "not_found"),
    # search
    Case("search-bbox-nan", "search", search(bbox=[NAN, 38.6, -94.9, 38.7]), "invalid_spec"),
    Case("search-bbox-three", "search", search(bbox=[-95.0, 38.6, -94.9]), "invalid_spec"),
    Case("search-bbox-text", "search", search(bbox="everywhere"), "invalid_spec"),
    Case("search-dates-reversed", "search", search(date_start="2020-07-01"), "invalid_spec"),
    Case("search-date-bad", "search", search(date_end="2020-02-30"), "invalid_spec"),
    Case("search-dates-not-start-end", "search", search(date_start=None, date_end=None, dates=["2020-01-01_bad"]),
         "invalid_spec"),
    Case("search-maxcc-huge", "search", search(maxcc=1e9), "invalid_spec"),
    Case("search-days-huge", "search", search(post_days=10**9), "invalid_spec"),
    Case("search-endpoint-bad-url", "search", search(endpoint="https://"), "invalid_spec"),
    Case("search-unknown-collection", "search", search(collection="no-such-collection"), "unknown_collection"),
    Case("search-unknown-connector", "search", search(connector="no_such_connector"), "unknown_connector"),
    # fetch
    Case("fetch-no-dates", "fetch", fetch(dates=[]), "invalid_spec"),
    Case("fetch-date-text", "fetch", fetch(dates=["yesterday"]), "invalid_spec"),
    Case("fetch-bbox-outside", "fetch", fetch(bbox=[-500, 0, 500, 1]), "invalid_spec"),
    Case("fetch-bands-text", "fetch", fetch(bands="red"), "invalid_spec"),
    Case("fetch-unknown-band", "fetch", fetch(bands=["no-such-band"]), "unknown_band"),
    Case("fetch-maxcc-infinite", "fetch", fetch(maxcc=INF), "invalid_spec"),
    # check
    Case("check-timeout-zero", "check", {"connector": "sentinel_aws", "timeout_s": 0}, "invalid_spec"),
    Case("check-endpoint-ftp", "check", {"connector": "sentinel_aws", "endpoint": "ftp://example.org"},
         "invalid_spec"),
    Case("check-unknown-connector", "check", {"connector": "no_such_connector"}, "unknown_connector"),
    Case("check-no-connector", "check", {"connector": ""}, "invalid_spec"),
    Case("weights-unknown-backbone", "weights", {"backbone": "resnet9000"}, "unknown_backbone"),
    Case("weights-no-backbone", "weights", {"backbone": ""}, "invalid_spec"),
    Case("weights-offline-and-missing", "weights", {"backbone": "timm_resnet18"}, "downloads_off"),
    # user templates
    Case("template-import-no-source", "template-import", {"name": "t1", "dataset_id": "d"}, "invalid_spec"),
    Case("template-import-two-sources", "template-import", {"name": "t1", "dataset_id": "d", "content": "a: 1",
                                                            "path": "/t.yaml"}, "invalid_spec"),
    Case("template-import-suffix", "template-import", {"name": "t1", "dataset_id": "d", "path": "/t.txt"},
         "invalid_spec"),
    Case("template-import-purpose", "template-import", {"name": "t1", "dataset_id": "d", "content": "a: 1",
                                                        "purpose": "Classification"}, "invalid_spec"),
    Case("template-import-dataset-path", "template-import", {"name": "t1", "dataset_id": "../d", "content": "a: 1"},
         "invalid_spec"),
    Case("template-import-schema-list", "template-import", {"name": "t1", "dataset_id": "d", "content": "a: 1",
                                                            "schema": [1]}, "invalid_spec"),
    Case("template-import-missing-file", "template-import",
         {"name": "t1", "dataset_id": "d", "path": "{folder}/none.yaml.j2"}, "template_file_unreadable"),
    Case("template-import-export-not-base64", "template-import",
         {"name": "t1", "dataset_id": "d", "path": "{folder}/t.json"}, "template_file_unreadable",
         prepare=lambda f: (f / "t.json").write_text('{"name": "x", "content": "not base64!"}')),
    Case("template-import-name-taken", "template-import", {"name": "timm_resnet : Segmentation", "dataset_id": "d",
                                                           "content": "a: 1"}, "template_name_taken"),
    Case("template-import-schema-type", "template-import", {"name": "t1", "dataset_id": "d", "content": "a: 1",
                                                            "schema": {"properties": {"lr": {"type": "tensor"}}}},
         "template_schema_invalid"),
    Case("template-import-schema-default-out-of-range", "template-import",
         {"name": "t1", "dataset_id": "d", "content": "a: 1", "schema": {"properties": {"runner": {
             "type": "object", "properties": {"max_epochs": {"type": "integer", "default": 0, "minimum": 1}}}}}},
         "template_schema_invalid"),
    Case("template-import-unknown-dataset", "template-import", {"name": "t1", "dataset_id": "d", "content": "a: 1"},
         "unknown_dataset"),
    Case("template-export-unknown", "template-export", {"id": "nope", "output_path": "{folder}/t.json"},
         "unknown_template"),
    Case("template-export-suffix", "template-export", {"id": "timm_resnet_seg", "output_path": "/tmp/t.txt"},
         "invalid_spec"),
    Case("template-export-onto-folder", "template-export", {"id": "timm_resnet_seg", "output_path": "{folder}/d.json"},
         "output_path_unusable", prepare=lambda f: (f / "d.json").mkdir()),
    Case("delete-template-not-there", "delete", {"kind": "templates", "id": "nothing-here"}, "not_found"),
    # the model registry
    Case("export-model-unknown", "export-model", {"tune_id": "no-such-tune"}, "unknown_model"),
    Case("export-model-id-path", "export-model", {"tune_id": "../tunes/x"}, "invalid_spec"),
    Case("import-model-both-forms", "import-model", {"archive": "/m.zip", "tune_config_url": "/c.yaml"},
         "invalid_spec"),
    Case("import-model-half-studio-form", "import-model", {"tune_config_url": "/c.yaml"}, "invalid_spec"),
    Case("import-model-missing-zip", "import-model", {"archive": "{folder}/none.zip"}, "model_file_missing"),
    Case("import-model-remote", "import-model", {"archive": "https://example.org/m.zip"}, "remote_url"),
    Case("import-model-zip-slip", "import-model", {"archive": "{folder}/evil.zip"}, "model_archive_invalid",
         prepare=lambda f: _model_zip(f / "evil.zip", {"tune.json": "{}", "../evil": "x"})),
    Case("import-model-no-record", "import-model", {"archive": "{folder}/bare.zip"}, "model_archive_invalid",
         prepare=lambda f: _model_zip(f / "bare.zip", {"config_deploy.yaml": "model: {}"})),
    Case("import-model-not-a-zip", "import-model", {"archive": "{folder}/m.zip"}, "model_archive_invalid",
         prepare=lambda f: (f / "m.zip").write_text("not a zip")),
    Case("import-model-config-not-yaml", "import-model", {"tune_config_url": "{folder}/c.yaml",
                                                          "tune_checkpoint_url": "{folder}/b.ckpt"},
         "model_config_invalid", prepare=lambda f: _studio_files(f, "model: [unclosed")),
    Case("import-model-not-a-checkpoint", "import-model", {"tune_config_url": "{folder}/c.yaml",
                                                           "tune_checkpoint_url": "{folder}/b.ckpt"},
         "model_checkpoint_invalid", prepare=lambda f: _studio_files(f, STUDIO_CONFIG)),
]


STUDIO_CONFIG = ("model:\n  class_path: terratorch.tasks.SemanticSegmentationTask\n  init_args: {class_names: [a, b]}\n"
                 "data:\n  class_path: x\n  init_args: {means: [0.0], stds: [1.0]}\n")


def _model_zip(path: Path, members: dict[str, str]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)


def _studio_files(folder: Path, config: str) -> None:
    (folder / "c.yaml").write_text(config)
    (folder / "b.ckpt").write_text("not a checkpoint")


# --- running -------------------------------------------------------------------------------------------------

def _tree(workspace: Path) -> set[str]:
    """Every path under the workspace, less its skeleton folders and the failure records (the engine's log)."""
    if not workspace.is_dir():
        return set()
    found = set()
    for dirpath, dirnames, filenames in os.walk(workspace):
        rel = Path(dirpath).relative_to(workspace)
        if rel.parts[:1] == (FAILED_DIR,):
            continue
        for name in dirnames + filenames:
            path = rel / name
            if len(path.parts) == 1 and (workspace / path).is_dir():
                continue  # datasets/, tunes/, .tmp/, locks/, ...: created by the engine, empty or not (checked inside)
            found.add(str(path))
    return found


def _substitute(value: Any, folder: Path) -> Any:
    if isinstance(value, str):
        return value.replace(DATA, str(folder / "data")).replace("{folder}", str(folder))
    if isinstance(value, dict):
        return {k: _substitute(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, folder) for v in value]
    return value


def run_case(case: Case, root: Path) -> dict[str, Any]:
    folder = root / case.id
    folder.mkdir(parents=True)
    workspace = folder / "ws"
    if case.prepare:
        case.prepare(folder)
    args: list[str] = [case.command] if case.command else []
    spec = case.spec(folder) if callable(case.spec) else _substitute(case.spec, folder)
    if spec is not None:
        path = folder / "spec.json"
        if isinstance(spec, bytes):
            path.write_bytes(spec)
        else:
            path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
        args.append(str(path))
    args += [_substitute(a, folder) for a in case.args]
    before = _tree(workspace)
    proc = subprocess.run(engine_command(workspace, *args), capture_output=True, text=True, env=engine_env(),
                          cwd=str(folder), timeout=240)
    events, bad = parse_stdout(proc.stdout)
    return {"returncode": proc.returncode, "events": events, "bad": bad, "stderr": proc.stderr,
            "left": sorted(_tree(workspace) - before)}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("bad-input")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        futures = {case.id: pool.submit(run_case, case, root) for case in CASES}
        return {name: future.result() for name, future in futures.items()}


def test_the_table_is_large_and_covers_every_command():
    from geostudio_plugin.engine.commands import COMMANDS

    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    covered = {c.command or (c.args[0] if c.args else None) for c in CASES}
    assert {name for name, entry in COMMANDS.items() if entry.spec} <= covered
    assert all(case.code in CODES for case in CASES if not case.xfail)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                                               if c.xfail else []) for c in CASES])
def test_bad_input(case: Case, results: dict[str, dict[str, Any]]):
    run = results[case.id]
    events, code = run["events"], run["returncode"]
    describe = f"exit {code}; events {json.dumps(events)[:1500]}; stderr tail:\n{run['stderr'][-1500:]}"
    assert not run["bad"], f"non-event lines on stdout: {run['bad'][:3]!r}"
    assert code not in (EXIT_OK, EXIT_INTERNAL), describe
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and events[-1] is errors[0], describe
    assert not [e for e in events if e["event"] == "result"], describe
    assert errors[0]["code"] == case.code, describe
    assert code == case.exit, describe
    assert errors[0]["message"] and errors[0].get("hint") is not None, describe
    assert run["left"] == [], f"left in the workspace: {run['left']}"


def test_records_changed_by_hand_do_not_break_list_or_the_known_ids(tmp_path: Path):
    """A record that is JSON but not an object, or holds odd values, is passed over, never a traceback."""
    workspace = tmp_path / "ws"
    for kind, item, record, text in (("datasets", "x", "dataset.json", "[1, 2]"),
                                     ("datasets", "w", "dataset.json", '{"created": 5}'),
                                     ("tunes", "y", "tune.json", "null"),
                                     ("tunes", "v", "tune.json", '{"created": ["2020"], "name": 7}')):
        (workspace / kind / item).mkdir(parents=True, exist_ok=True)
        (workspace / kind / item / record).write_text(text)
    for command, spec, code in (("list", None, None), ("tune", tune("nope"), "unknown_dataset"),
                                ("infer", infer(fine_tuning_id="nope"), "unknown_model")):
        args = [command]
        if spec is not None:
            (tmp_path / "spec.json").write_text(json.dumps(spec))
            args.append(str(tmp_path / "spec.json"))
        proc = subprocess.run(engine_command(workspace, *args), capture_output=True, text=True, env=engine_env(),
                              cwd=str(tmp_path), timeout=120)
        events, bad = parse_stdout(proc.stdout)
        assert not bad and proc.returncode != EXIT_INTERNAL, (command, proc.returncode, events[-1:])
        kinds = [e["event"] for e in events]
        if code is None:
            assert proc.returncode == EXIT_OK and "result" in kinds and "error" not in kinds, (command, events[-2:])
        else:
            assert events[-1]["event"] == "error" and events[-1]["code"] == code, (command, events[-1:])
