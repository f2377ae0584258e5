"""The QGIS side of the door: what it sends the engine and what it reads back, in one place.

Standard library only (plus ``engine.wire``, itself standard library only), so the engine's tests can
import it and check every builder against the engine's own spec models (tests/engine/test_contract.py).

- Event kinds, workspace record names and exit codes come from ``engine.wire``.
- Typed records (``TypedDict``) describe every result and record the QGIS side reads.
- Spec builders take plain values (paths, bbox lists, dicts), never QGIS objects; the docks and the
  Processing algorithms both call them, so each rule exists once. ``qgis_inputs`` turns QGIS objects
  (layers, extents) into those plain values.
- ``resolve_endpoints`` is the one endpoint precedence rule.
- ``EngineFailure`` is what a failed job becomes for whoever shows it to the user.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, TypedDict

from .engine.wire import (
    EVENT_ERROR,
    EVENT_LOG,
    EVENT_METRIC,
    EVENT_PROGRESS,
    EVENT_RESULT,
    EVENTS,
    EXIT_CANCELLED,
    FAILED_DIR,
    KINDS,
    RECORDS,
)

__all__ = [
    "EVENT_ERROR", "EVENT_LOG", "EVENT_METRIC", "EVENT_PROGRESS", "EVENT_RESULT", "EVENTS", "EXIT_CANCELLED",
    "FAILED_DIR", "KINDS", "RECORDS", "COMMANDS", "DEVICES", "DEVICE_PATTERN",
    "is_progress", "is_metric", "is_log", "is_result", "is_error",
    "normalise_device", "resolve_endpoints",
    "catalog_spec", "search_spec", "fetch_spec", "check_spec", "prescan_spec", "onboard_payload", "tune_spec",
    "tune_dry_run_spec", "tune_resume_spec", "is_resumable", "is_model", "kept_item", "weights_spec",
    "infer_spec", "delete_spec", "dataset_sample_paths", "EngineFailure",
    "export_model_spec", "import_model_spec", "import_studio_model_spec",
    "studio_payload", "with_studio_payload",
]

# The engine's commands (``python -m geostudio_plugin.engine <command>``) the QGIS side runs.
CATALOG, SEARCH, FETCH, CHECK, PRESCAN, ONBOARD, TUNE, INFER, DELETE, LIST, WEIGHTS = (
    "catalog", "search", "fetch", "check", "prescan", "onboard", "tune", "infer", "delete", "list", "weights")
COMMANDS = (CATALOG, SEARCH, FETCH, CHECK, PRESCAN, ONBOARD, TUNE, INFER, DELETE, LIST, WEIGHTS)
TEMPLATE_IMPORT, TEMPLATE_EXPORT = "template-import", "template-export"  # user templates (Import / Export buttons)
COMMANDS += (TEMPLATE_IMPORT, TEMPLATE_EXPORT)
__all__ += ["template_import_spec", "template_export_spec"]
EXPORT_MODEL, IMPORT_MODEL = "export-model", "import-model"  # the model registry (Export / Import buttons)
COMMANDS += (EXPORT_MODEL, IMPORT_MODEL)
CHECK_AVAILABILITY = "check-availability"  # inference over an area: which dates have data
COMMANDS += (CHECK_AVAILABILITY,)
__all__ += ["infer_area_spec", "availability_spec"]

# One device vocabulary for tuning and inference (settings, the Fine-tuning dock, the engine's specs).
DEVICES = ("auto", "cpu", "cuda", "mps")  # plus "cuda:N" for the N-th GPU
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$")


# --------------------------------------------------------------------------------------------- events
def _kind(event: Mapping[str, Any]) -> Any:
    return event.get("event") if isinstance(event, Mapping) else None


def is_progress(event: Mapping[str, Any]) -> bool:
    """A progress event: stage, fraction (0..1 within the whole command), message."""
    return _kind(event) == EVENT_PROGRESS


def is_metric(event: Mapping[str, Any]) -> bool:
    return _kind(event) == EVENT_METRIC


def is_log(event: Mapping[str, Any]) -> bool:
    return _kind(event) == EVENT_LOG


def is_result(event: Mapping[str, Any]) -> bool:
    return _kind(event) == EVENT_RESULT


def is_error(event: Mapping[str, Any]) -> bool:
    return _kind(event) == EVENT_ERROR


# -------------------------------------------------------------------------------------------- records
class ProgressEvent(TypedDict, total=False):
    event: str
    stage: str
    fraction: float
    message: str


class ErrorEvent(TypedDict, total=False):
    event: str
    code: str  # snake_case, one of the README's error table
    message: str
    hint: str
    details: list[Any]  # strings, or {"field", "message"} for spec errors
    studio_code: str  # the Studio's numbered code ("0002") where the error has one


class EngineResult(TypedDict):
    """The ``result`` event: the paths a command wrote and a small summary (one of the *Summary records)."""

    event: str
    outputs: dict[str, Any]
    summary: dict[str, Any]


class BandEntry(TypedDict, total=False):
    band_name: str
    resolution: Optional[str]
    description: str
    RGB_band: Optional[str]  # "R", "G", "B" or None
    alt_names: list[str]


class CollectionEntry(TypedDict, total=False):
    collection: str
    long_name: str
    description: str
    modality_tag: Optional[str]
    resolution_m: Optional[float]
    bands: list[BandEntry]
    source: str


class AccessState(TypedDict, total=False):
    state: str  # "ready", "credentials missing", "unreachable", ...
    detail: str


class ConnectorEntry(TypedDict, total=False):
    id: str
    name: str
    access: AccessState
    credentials: list[dict[str, Any]]  # {"env", "label", "secret"}
    endpoint: str
    endpoint_override: bool
    credentials_only_for_default_endpoint: bool
    collections: list[CollectionEntry]


class TemplateEntry(TypedDict, total=False):
    id: str
    name: str
    extra_info: dict[str, Any]  # model_category


class BackboneEntry(TypedDict, total=False):
    name: str
    params_m: float
    model_params: dict[str, Any]  # model_category


class CatalogSummary(TypedDict, total=False):
    connectors: list[ConnectorEntry]
    templates: list[TemplateEntry]
    backbones: list[BackboneEntry]


class SearchSummary(TypedDict, total=False):
    connector: str
    collection: str
    bbox: list[float]
    date_start: str
    date_end: str
    maxcc: float
    results: list[dict[str, Any]]  # [{"bbox", "unique_dates", "available_data"}] (the Studio's data-advice shape)
    footprints: dict[str, Any]  # GeoJSON FeatureCollection; properties id, date, datetime, cloud_cover
    suggested_dates: list[str]


class FetchedFile(TypedDict, total=False):
    date: str
    path: str
    bands: list[str]
    width: int
    height: int
    rgb: Optional[list[int]]  # 1-based band numbers of R, G, B
    valid_fraction: float


class FetchSummary(TypedDict, total=False):
    fetch_id: str
    connector: str
    collection: str
    bbox: list[float]
    files: list[FetchedFile]


class CheckSummary(TypedDict, total=False):
    connector: str
    ok: bool
    endpoint: str
    status: int
    latency_ms: int


class PrescanProblem(TypedDict, total=False):
    code: str
    message: str


class PrescanReport(TypedDict, total=False):
    pairs: int
    problems: list[PrescanProblem]
    bands_by_suffix: dict[str, list[dict[str, Any]]]  # suffix -> [{"value": band name}, ...]
    label_values: list[int]


class PrescanSummary(TypedDict, total=False):
    report: PrescanReport


class OnboardSummary(TypedDict, total=False):
    dataset_id: str
    n_samples: int
    splits: dict[str, int]
    training_params: dict[str, Any]


class TuneSummary(TypedDict, total=False):
    tune_id: str
    status: str  # "Finished", or "DryRun" (then only tune_id, status and config_text)
    config_text: str  # a dry run's full TerraTorch config
    resumed: bool
    device: str
    seconds: float
    epochs_run: int
    best_val_loss: float
    test_metrics: dict[str, float]


class InferLayer(TypedDict, total=False):
    path: str
    display_name: str
    z_index: int
    visible_by_default: bool
    geoserver_style: dict[str, Any]  # the Studio's shape: segmentation / regression / rgb lists


class InferOutput(TypedDict, total=False):
    prediction: str  # a COG: segmentation uint8 label ids (nodata 255; int16/-9999 for ids > 254), regression float32
    confidence: str  # segmentation with confidence on: top-class probability in percent (uint8, nodata 255)
    class_fraction: dict[str, float]  # segmentation only
    timings: dict[str, float]  # predict_s, cog_s


class InferDate(TypedDict, total=False):
    """One sub-box x date of an inference over an area (``dates`` in the result and in inference.json)."""

    date: str  # the day inferred on (a range's clearest day)
    request: str  # the temporal_domain entry it answers
    bbox: list[float]
    scenes: list[dict[str, Any]]  # id, datetime, date, cloud_cover
    inputs: dict[str, str]  # modality tag -> fetched GeoTIFF
    rgb: Optional[str]  # uint8 composite of the RGB-tagged bands
    prediction: str
    masked: Optional[str]  # classes with 999 cloud, 998 snow/ice, 997 permanent water; nodata -9999
    masks: dict[str, int]  # pixels per mask


class InferSummary(TypedDict, total=False):
    inference_id: str
    tune_id: str
    device: str
    seconds: float
    layers: list[InferLayer]
    classes: list[dict[str, Any]]
    outputs: list[InferOutput]
    dates: list[InferDate]  # inference over an area and dates only


class AvailabilityDate(TypedDict, total=False):
    request: str
    start: str
    end: str
    date: Optional[str]  # the day with data (None: none)
    modalities: dict[str, dict[str, Any]]  # tag -> connector, collection, scenes [{id, datetime, cloud_cover}]
    nearest_dates: list[str]  # when date is None


class AvailabilitySummary(TypedDict, total=False):
    """``check-availability``'s result."""

    area_sq_km: float
    bbox: list[float]
    maxcc: float
    modalities: list[str]
    dates: list[AvailabilityDate]
    available: bool  # every entry has a date


class DeleteSummary(TypedDict, total=False):
    kind: str
    id: str


class DatasetClass(TypedDict, total=False):
    index: int  # TerraTorch class index, 0..N-1
    id: int  # the user's label value
    name: str
    color: str
    opacity: float


class DatasetRecord(TypedDict, total=False):
    """``datasets/<id>/dataset.json``."""

    dataset_id: str
    dataset_name: str
    purpose: str
    status: str  # "Succeeded"
    created: str
    source: str
    size_bytes: int
    n_samples: int
    modalities: list[str]
    data_sources: list[dict[str, Any]]  # as validated: file_suffix without a glob
    label_suffix: str  # without a glob
    classes: list[DatasetClass]
    splits: dict[str, list[str]]  # split -> sample stems
    training_params: dict[str, Any]  # modality -> {train_data_dir, train_labels_dir, bands, rgb_indices, ...}
    log: list[str]


class FailureRecord(TypedDict, total=False):
    """``failed/<kind>/*.json``: a failed attempt, kept beside the items with its reason and log."""

    name: str
    status: str  # "Failed"
    created: str
    error: ErrorEvent
    log: list[str]
    record: str  # the file it was read from


# Tune statuses: Running (only in staging, or a tune whose engine died: see below), Finished, Cancelled and
# Failed (kept with checkpoints/last.ckpt when an epoch had ended: resumable), DryRun (config.yaml only).
TUNE_RUNNING, TUNE_FINISHED, TUNE_CANCELLED, TUNE_FAILED, TUNE_DRY_RUN = (
    "Running", "Finished", "Cancelled", "Failed", "DryRun")
TUNE_RESUMABLE = (TUNE_CANCELLED, TUNE_FAILED)


class ModalityBand(TypedDict, total=False):
    """A band a model reads, as the Studio's data sources list it."""

    index: int  # 0-based band of the modality's raster
    band_name: Optional[str]
    RGB_band: Optional[str]  # "R", "G", "B" or None
    scaling_factor: Optional[float]


class ModalitySpec(TypedDict, total=False):
    """One entry of a tune's ``model_input_data_spec`` (the Studio's shape): a modality the model reads, in its
    input order, restricted to the bands it reads, with the preprocessing its datamodule applied in training."""

    connector: Optional[str]
    collection: Optional[str]
    modality_tag: Optional[str]  # S2L1C, S1GRD, ...; None for a single-modality model imported without one
    file_suffix: Optional[str]  # "_S2Hand.tif": how inference matches a raster to this modality
    bands: list[ModalityBand]
    align_dates: Optional[bool]
    transform: Optional[str]
    band_count: Optional[int]  # bands of the raster (the model reads ``bands`` of them)
    norm_means: list[float]  # one per band read
    norm_stds: list[float]
    constant_scale: float  # pixels are multiplied by it before normalising
    no_data_replace: Optional[float]  # what nodata and NaN pixels become (None: kept as NaN)
    nodata: Optional[float]  # the rasters' nodata value at onboarding


class TuneRecord(TypedDict, total=False):
    """``tunes/<id>/tune.json``."""

    tune_id: str
    name: str
    status: str  # TUNE_FINISHED, TUNE_CANCELLED, TUNE_FAILED, TUNE_DRY_RUN
    resumable: bool  # checkpoints/last.ckpt is kept: contract.tune_resume_spec continues it
    last_checkpoint: str  # "checkpoints/last.ckpt" when resumable
    checkpoint: Optional[str]  # the best weights (state dict); None for a dry run or a tune stopped in epoch 1
    config: str  # "config.yaml": the full TerraTorch config
    log: Optional[str]  # "engine.log": the tune's own log (appended to on resume)
    log_tail: list[str]  # the last lines of that log, for a tune whose engine died
    error: ErrorEvent  # why a Failed tune failed (code "engine_died" when its engine was killed)
    resumed: list[dict[str, Any]]  # one entry per resume: at_epoch, started
    model_parameters: dict[str, Any]  # merged with the template's defaults; runner.max_epochs is the plan
    dataset_id: str
    base_model_id: str
    tune_template_id: str
    device: str
    seconds: float
    epochs_run: int
    best_val_loss: float
    test_metrics: dict[str, float]
    history: list[dict[str, Any]]  # one entry per epoch: epoch, step, lr and train/... val/... metrics
    model_input_data_spec: list[ModalitySpec]  # every modality the model reads, in its input order
    data_spec: dict[str, Any]  # the first modality's view (modality_tag, bands, band_names, ...): older readers


class InferenceRecord(TypedDict, total=False):
    """``inferences/<id>/inference.json``."""

    inference_id: str
    tune_id: str
    model_display_name: str
    description: str
    device: str
    layers: list[InferLayer]
    outputs: list[InferOutput]
    dates: list[InferDate]  # inference over an area and dates only


@dataclass(frozen=True)
class EngineFailure:
    """A job that gave no result: what the user reads (message, hint), what "more" shows (details)."""

    message: str
    hint: str = ""
    details: str = ""
    code: str = ""  # the engine's error code; "" when the engine never reported one
    cancelled: bool = False
    log_path: Optional[str] = None
    exit_code: Optional[int] = None

    @property
    def text(self) -> str:
        return f"{self.message} {self.hint}".strip()

    @classmethod
    def from_error_event(cls, error: Mapping[str, Any], **kwargs: Any) -> "EngineFailure":
        details = "\n".join(f"{d.get('field')}: {d.get('message')}" if isinstance(d, Mapping) else str(d)
                            for d in error.get("details") or [])
        return cls(str(error.get("message") or "Engine error"), str(error.get("hint") or ""), details=details,
                   code=str(error.get("code") or ""), **kwargs)


# ---------------------------------------------------------------------------------------------- rules
def normalise_device(value: Optional[str]) -> str:
    """One of auto, cpu, cuda, cuda:N, mps; "gpu" (the older spelling) is "cuda". Raises ValueError otherwise."""
    device = (value or "auto").strip().lower()
    if device == "gpu":
        device = "cuda"
    if not DEVICE_PATTERN.match(device):
        raise ValueError(f"unknown device '{value}': use auto, cpu, cuda, cuda:N or mps")
    return device


def payload_endpoints(options: Mapping[str, Any], primary_connector: str = "") -> dict[str, str]:
    """The endpoints an onboarding payload names itself: ``endpoints``, and the older single ``endpoint``
    (which belongs to the first data source's connector)."""
    own = {str(k): str(v) for k, v in (options.get("endpoints") or {}).items() if v}
    if options.get("endpoint") and primary_connector:
        own.setdefault(primary_connector, str(options["endpoint"]))
    return own


def resolve_endpoints(connectors: Iterable[str], user: Mapping[str, str],
                      payload: Mapping[str, str]) -> dict[str, str]:
    """The one endpoint precedence rule: an endpoint the user set in the Connectors settings wins; a payload's
    own endpoints apply only to connectors without a user setting. User settings are added only for the
    ``connectors`` the job uses; the payload's own entries are all kept."""
    chosen = {k: v for k, v in payload.items() if v}
    for connector in connectors:
        if connector and user.get(connector):
            chosen[connector] = user[connector]
    return chosen


def _bbox(bbox: Sequence[float]) -> list[float]:
    values = [float(v) for v in bbox]
    if len(values) != 4:
        raise ValueError(f"a bbox needs 4 numbers [minx, miny, maxx, maxy], not {list(bbox)}")
    return values


# ------------------------------------------------------------------------------------------- builders
def catalog_spec(endpoints: Mapping[str, str], credentials_configured: Mapping[str, bool],
                 check_access: bool = True) -> dict[str, Any]:
    """Ask for access states; no secret goes into the spec, only whether QGIS holds credentials.
    A run-time catalogue (IBM Research STAC) is asked for its collections when the user points it somewhere."""
    return {"check_access": check_access, "discover": "IBMResearchSTAC" in endpoints,
            "endpoints": dict(endpoints), "credentials_configured": dict(credentials_configured)}


def search_spec(connector: str, collection: str, bbox: Sequence[float], date_start: str, date_end: str, *,
                maxcc: float = 80, endpoint: Optional[str] = None) -> dict[str, Any]:
    """Scenes and dates of one collection in an EPSG:4326 bbox between two ISO dates."""
    return {"connector": connector, "endpoint": endpoint or None, "collection": collection, "bbox": _bbox(bbox),
            "date_start": date_start, "date_end": date_end, "maxcc": maxcc}


def fetch_spec(connector: str, collection: str, bbox: Sequence[float], dates: Sequence[str], *,
               bands: Sequence[str] = (), maxcc: float = 100, endpoint: Optional[str] = None) -> dict[str, Any]:
    """One mosaic per date of the named bands (default: the collection's R, G, B)."""
    return {"connector": connector, "endpoint": endpoint or None, "collection": collection, "bbox": _bbox(bbox),
            "dates": list(dates), "bands": list(bands), "maxcc": maxcc}


def check_spec(connector: str, endpoint: Optional[str] = None) -> dict[str, Any]:
    return {"connector": connector, "endpoint": endpoint or None}


S2_BAND = re.compile(r"^B(0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)


def propose_modality(band_names: Sequence[str], collection: Optional[Mapping[str, Any]] = None) -> str:
    """A modality tag for a data source the user has not named: the picked collection's own tag, else a
    sensible default from the bands a pre-scan read: VV/VH -> S1GRD, Sentinel-2 band names (B02, B8A...) or
    13 bands -> S2L1C / 12 -> S2L2A, anything else IMAGE. The user can change it; it names a folder."""
    if collection:
        tag = str(collection.get("modality_tag") or "")
        if not tag and collection.get("collection"):
            tag = re.sub(r"[^A-Za-z0-9]+", "_", str(collection["collection"])).upper()
        if tag:
            return tag
    names = [str(n).strip() for n in band_names]
    upper = {n.upper() for n in names}
    if upper and upper <= {"VV", "VH", "HH", "HV"}:
        return "S1GRD"
    optical = sum(1 for n in names if S2_BAND.match(n))
    if len(names) == 13 or "B10" in upper:
        return "S2L1C"
    if optical >= 3 or len(names) == 12:
        return "S2L2A"
    return "IMAGE"


def prescan_spec(dataset_url: str, label_suffix: str, data_suffixes: Sequence[str]) -> dict[str, Any]:
    return {"dataset_url": dataset_url, "label_suffix": label_suffix, "training_data_suffixes": list(data_suffixes)}


def studio_payload(text: Optional[str]) -> Optional[dict[str, Any]]:
    """A Studio payload given as is (Processing's "Studio payload (JSON)" parameter): the JSON text of an object,
    or the path of a .json file holding one; None when empty. Raises ValueError saying what is wrong."""
    text = (text or "").strip()
    if not text:
        return None
    where = ""
    if not text.startswith(("{", "[")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"'{text[:80]}' is neither JSON nor an existing file: give the payload's JSON text "
                             "(an object, {...}) or the path of a .json file holding it.")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the payload file {path}: {exc}") from None
        where = f" in {path}"
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the payload{where} is not valid JSON ({exc}); give a JSON object such as "
                         '{"dataset_id": "..."}.') from None
    if not isinstance(payload, dict):
        raise ValueError(f"the payload{where} must be a JSON object ({{...}}), not a {type(payload).__name__}.")
    return payload


def with_studio_payload(payload: Mapping[str, Any], *, defaults: Optional[Mapping[str, Any]] = None,
                        overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The one rule for a Studio payload given instead of a form (the Processing algorithms' PAYLOAD): the payload
    is the spec and its fields win over the form's, which are not used; ``defaults`` (what the settings give, such
    as the device) fill only the top-level fields the payload does not name; ``overrides`` are the few parameters
    an algorithm documents as applying over the payload (Onboard dataset's SOURCE: a local copy of the payload's
    dataset), used only when given (not None or ""). Nested objects are not merged."""
    given = {k: v for k, v in (overrides or {}).items() if v not in (None, "")}
    return {**dict(defaults or {}), **dict(payload), **given}


def onboard_payload(form: Mapping[str, Any], endpoints: Mapping[str, str]) -> dict[str, Any]:
    """A Studio onboarding v2 payload from a form (the dock's fields or a payload file) and the user's
    Connectors endpoint settings, with ``onboarding_options.endpoints`` decided by ``resolve_endpoints``.
    The form is not changed."""
    payload = {**form, "onboarding_options": dict(form.get("onboarding_options") or {})}
    payload.setdefault("version", "v2")
    options = payload["onboarding_options"]
    sources = list(payload.get("data_sources") or [])
    primary = str(sources[0].get("connector") or "") if sources else ""
    own = payload_endpoints(options, primary)
    if primary:
        options.pop("endpoint", None)  # folded into endpoints under the first source's connector
    chosen = resolve_endpoints((str(s.get("connector") or "") for s in sources), endpoints, own)
    if chosen:
        options["endpoints"] = chosen
    else:
        options.pop("endpoints", None)
    return payload


def tune_name_problem(name: str) -> str:
    """What is wrong with a tune name under the Studio's rule (4-30 letters, digits, '-' or '.'; spaces and '_'
    become '-'), naming the characters that are not allowed; "" when it is fine."""
    value = re.sub(r"[\s_]+", "-", name.strip())
    bad = sorted({c for c in value if not re.fullmatch(r"[A-Za-z0-9.-]", c)}, key=value.index)
    if bad:
        return (f"{', '.join(repr(c) for c in bad)} {'is' if len(bad) == 1 else 'are'} not allowed in a tune name: "
                "use letters, digits, '-' or '.' (spaces and '_' become '-').")
    if not 4 <= len(value) <= 30:
        return f"A tune name has 4 to 30 characters; this one has {len(value)}."
    return ""


def tune_spec(name: str, dataset_id: str, base_model_id: str, template_id: str, *, epochs: Optional[int] = None,
              batch_size: Optional[int] = None, lr: Optional[float] = None, crop_size: Optional[int] = None,
              device: str = "auto", description: str = "",
              model_parameters: Optional[Mapping[str, Any]] = None, weights: str = "") -> dict[str, Any]:
    """The Studio's tune submission, pointing at local names. ``model_parameters`` is the nested partial override
    (the Fine-tuning dock's parameter form gives only the values changed from the template's defaults); the
    shortcuts ``epochs``, ``batch_size``, ``lr``, ``crop_size``, when given, are set over it. ``weights``: where
    the backbone starts, ``random`` (the engine's default), ``pretrained`` (its published weights, from the Hugging
    Face cache) or a local checkpoint file."""
    params: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in (model_parameters or {}).items()}
    if epochs is not None:
        params.setdefault("runner", {})["max_epochs"] = epochs
    data: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    if crop_size:
        data["crop_size"] = crop_size
    if data:
        params.setdefault("data", {}).update(data)
    if lr is not None:
        params.setdefault("optimizer", {})["lr"] = lr
    spec = {"name": name, "description": description, "dataset_id": dataset_id, "base_model_id": base_model_id,
            "tune_template_id": template_id, "model_parameters": params, "device": normalise_device(device)}
    if weights.strip():
        spec["train_options"] = {"weights": weights.strip()}
    return spec


def tune_dry_run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A ``tune_spec`` that only renders: the engine writes the full TerraTorch config into a tune folder with
    status "DryRun" and returns its text as ``summary.config_text``; nothing is trained."""
    out = dict(spec)
    out["train_options"] = {**dict(spec.get("train_options") or {}), "dry_run": True}
    return out


def tune_resume_spec(record: Mapping[str, Any], device: Optional[str] = None) -> dict[str, Any]:
    """Continue a Cancelled or Failed tune (``record["resumable"]``) from its last checkpoint to its planned
    epochs, with its own dataset, backbone, template and parameters (``device`` may differ)."""
    spec: dict[str, Any] = {"name": record["name"], "dataset_id": record["dataset_id"],
                            "base_model_id": record["base_model_id"], "tune_template_id": record["tune_template_id"],
                            "train_options": {"resume_from": record["tune_id"]}}
    if device:
        spec["device"] = normalise_device(device)
    return spec


def weights_spec(backbone: str) -> dict[str, Any]:
    """Download a backbone's published pre-trained weights into the Hugging Face cache (needs downloads allowed)."""
    return {"backbone": backbone}


def is_model(record: Mapping[str, Any]) -> bool:
    """A finished tune: a model inference can run (a dry run, a cancelled or failed tune is not one yet)."""
    return record.get("status") == TUNE_FINISHED and bool(record.get("checkpoint"))


def is_resumable(record: Mapping[str, Any]) -> bool:
    """A tune kept with its last checkpoint (Cancelled, or Failed after an epoch): Resume can continue it."""
    return record.get("status") in TUNE_RESUMABLE and bool(record.get("resumable"))


def kept_item(event: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    """The tune a cancelled or failed run kept (a ``log`` event with ``kept``: kind, id, status, epochs_run,
    planned_epochs, path), or None."""
    kept = event.get("kept") if is_log(event) else None
    return dict(kept) if isinstance(kept, Mapping) else None


def infer_spec(raster_path: str, bbox: Optional[Sequence[float]], model: str, device: str = "auto", *,
               description: str = "", output_path: Optional[str] = None, confidence: bool = True
               ) -> dict[str, Any]:
    """A tuned model on one GeoTIFF, optionally only inside an EPSG:4326 bbox. ``confidence`` (segmentation):
    also write the top-class probability beside the prediction (the engine's default, True)."""
    spec: dict[str, Any] = {
        "fine_tuning_id": model, "description": description, "device": normalise_device(device),
        "confidence": bool(confidence),
        "spatial_domain": {"bbox": [_bbox(bbox)] if bbox else [], "urls": [raster_path] if raster_path else []},
        "temporal_domain": [],
    }
    if output_path:
        spec["output_path"] = output_path
    return spec


def _post_processing(post_processing: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The Studio's post_processing flags as it sends them ("True"/"False")."""
    flags = dict(post_processing or {})
    for key in ("cloud_masking", "snow_ice_masking", "permanent_water_masking"):
        if isinstance(flags.get(key), bool):
            flags[key] = "True" if flags[key] else "False"
    return flags


def infer_area_spec(model: str, bbox: Sequence[float], dates: Sequence[str], *, maxcc: float = 100,
                    post_processing: Optional[Mapping[str, Any]] = None, device: str = "auto",
                    description: str = "", endpoints: Optional[Mapping[str, str]] = None,
                    max_area_sq_km: Optional[float] = None, location: str = "",
                    temporal_each: bool = False) -> dict[str, Any]:
    """A tuned model over an EPSG:4326 bbox and dates ("YYYY-MM-DD" or "YYYY-MM-DD_YYYY-MM-DD"): the engine
    checks availability, fetches the model's input data, predicts and masks (``post_processing``: cloud_masking,
    snow_ice_masking, permanent_water_masking). ``maxcc`` 100 is the Studio API's default. ``temporal_each``
    (GeoStudio's, not the Studio's): a range gives every day in it with data, one output per day, instead of
    its clearest day."""
    spec: dict[str, Any] = {
        "fine_tuning_id": model, "description": description, "location": location,
        "device": normalise_device(device),
        "spatial_domain": {"bbox": [_bbox(bbox)], "urls": [], "polygons": [], "tiles": []},
        "temporal_domain": list(dates), "maxcc": maxcc, "post_processing": _post_processing(post_processing),
        "endpoints": dict(endpoints or {}),
    }
    if max_area_sq_km is not None:
        spec["max_area_sq_km"] = max_area_sq_km
    if temporal_each:
        spec["temporal_each"] = True
    return spec


def availability_spec(model: str, bbox: Sequence[float], dates: Sequence[str], *, maxcc: float = 80,
                      endpoints: Optional[Mapping[str, str]] = None, temporal_each: bool = False) -> dict[str, Any]:
    """``check-availability``: which of the dates have data for the model's input over the bbox (the UI's 80 %
    cloud limit by default); the summary lists, per date, the scenes (id, datetime, cloud cover) and, for a
    date without data, the nearest dates that have some. ``temporal_each``: a range lists every day with data."""
    spec = {"fine_tuning_id": model, "spatial_domain": {"bbox": [_bbox(bbox)]}, "temporal_domain": list(dates),
            "maxcc": maxcc, "endpoints": dict(endpoints or {})}
    return {**spec, "temporal_each": True} if temporal_each else spec


def export_model_spec(tune_id: str, output_path: Optional[str] = None) -> dict[str, Any]:
    """``export-model``: a finished tune as one zip (default ``<workspace>/exports/<tune_id>.zip``); the result's
    ``outputs.archive`` is the zip, ``summary`` has tune_id, name, archive, bytes, files."""
    return {"tune_id": tune_id, **({"output_path": output_path} if output_path else {})}


def import_model_spec(archive: str, name: Optional[str] = None) -> dict[str, Any]:
    """``import-model`` of a zip made by export-model; the result's ``summary`` has tune_id, name, status
    ("Finished"), purpose, imported_from ("zip"), notes (what could not be derived), classes."""
    return {"archive": archive, **({"name": name} if name else {})}


def import_studio_model_spec(config_path: str, checkpoint_path: str, name: Optional[str] = None,
                             description: str = "") -> dict[str, Any]:
    """``import-model`` of the Studio's completed-tune form (upload-completed-tunes): config_deploy.yaml and the
    state-dict checkpoint, as local paths or file:// URLs (imported_from "studio")."""
    spec: dict[str, Any] = {"tune_config_url": config_path, "tune_checkpoint_url": checkpoint_path}
    if name:
        spec["name"] = name
    if description:
        spec["description"] = description
    return spec


def delete_spec(kind: str, item_id: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown workspace kind '{kind}': one of {', '.join(KINDS)}")
    return {"kind": kind, "id": item_id}


# --------------------------------------------------------------------------------------- record reading
def dataset_sample_paths(record: Mapping[str, Any], dataset_dir: Path, sample: str,
                         modality: Optional[str] = None) -> tuple[Path, Path]:
    """(image, label) files of one sample of an onboarded dataset, from the record's own suffixes."""
    modality = modality or record["modalities"][0]
    params = record["training_params"][modality]
    source = next(s for s in record["data_sources"] if s["modality_tag"] == modality)
    image = Path(dataset_dir) / params["train_data_dir"] / f"{sample}{source['file_suffix']}"
    label = Path(dataset_dir) / params.get("train_labels_dir", "labels") / f"{sample}{record['label_suffix']}"
    return image, label


def template_import_spec(name: str, dataset_id: str, *, path: Optional[str] = None, content: Optional[str] = None,
                         schema: Optional[Any] = None, purpose: Optional[str] = None, description: str = "",
                         backbone: Optional[str] = None) -> dict[str, Any]:
    """``template-import``: a TerraTorch YAML (or Jinja YAML with the built-in templates' variables) as a user
    template, from a file (``path``: .yaml, .yml, .yaml.j2, or an export .json/.zip) or its text (``content``);
    ``schema``: its parameter schema (a JSON Schema object, or the path of a .json file); ``purpose``:
    Segmentation, Regression or Other (default: the export's, else Other). Validated by rendering it against
    ``dataset_id`` and building the model (``backbone``, default timm_resnet18) before it is stored. The result's
    ``summary`` has id, name, purpose, user_defined, model_params, validation; delete it with
    ``delete_spec("templates", id)``."""
    if (path is None) == (content is None):
        raise ValueError("give exactly one of path and content")
    spec: dict[str, Any] = {"name": name, "dataset_id": dataset_id, "description": description}
    spec.update({"path": path} if path is not None else {"content": content})
    for key, value in (("schema", schema), ("purpose", purpose), ("backbone", backbone)):
        if value is not None and value != "":
            spec[key] = value
    return spec


def template_export_spec(template_id: str, output_path: str) -> dict[str, Any]:
    """``template-export``: a template (user-defined or built-in, by id or name) as the Studio's template JSON
    (``output_path`` ending .json: TaskIn, content base64) or a zip (.zip: template.json + content.yaml.j2); both
    import back with ``template_import_spec(path=...)``. The result's ``outputs.path`` is the file."""
    return {"id": template_id, "output_path": output_path}
