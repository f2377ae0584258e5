"""Onboard a dataset: pair, check, split, write a TerraTorch-ready folder, compute statistics.

Layout of ``<workspace>/datasets/<dataset_id>/`` (paths in dataset.json are relative to it):
  training_data/<MODALITY>/<sample><file_suffix>   images (all bands kept, COG by default)
  labels/<sample><label_suffix>                    int16 class indices, -1 = ignore
  split_files/{train,val,test}_data.txt            one sample id per line
  dataset.json                                     spec, splits, training_params, log
"""

from __future__ import annotations

import os
import math
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .. import protocol
from ..protocol import EngineError
from ..rasters import chip_windows, geotiff_writer, open_raster, read, write_geotiff
from ..workspace import Workspace, now_iso, write_json
from .scan import (MIN_SCENE_SIDE, E_FILES, E_PARAMS, E_SPLIT, E_STATS, E_WRITE, HINTS, Sample, label_problem, scan,
                   valid_label_values)
from .source import materialise
from .spec import OnboardSpec
from .stats import BandStats

SPLITS = ("train", "val", "test")
E_TOO_LARGE = "dataset_too_large"


@dataclass
class Item:
    """One training sample: a whole scene, or one chip of it."""

    sample_id: str
    source: Sample
    window: Optional[Window]


def plan_items(samples: list[Sample], width_height: dict[str, tuple[int, int]], chip: Optional[int]) -> list[Item]:
    if not chip:
        return [Item(s.stem, s, None) for s in samples]
    items = []
    for sample in samples:
        width, height = width_height[sample.stem]
        for row, col, window in chip_windows(width, height, chip):
            items.append(Item(f"{sample.stem}_r{row:02d}c{col:02d}", sample, window))
    return items


def split_items(ids: list[str], fractions: list[float], seed: int) -> dict[str, list[str]]:
    """Deterministic: sort, shuffle with the seed, cut by fractions (rounding gives train the remainder)."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val = min(round(n * fractions[1]), n)
    n_test = min(round(n * fractions[2]), n - n_val)  # two halves rounded up must not take more than n
    n_train = n - n_val - n_test
    splits = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    empty = [name for name, f in zip(SPLITS, fractions) if f > 0 and not splits[name]]
    if empty or not splits["train"]:
        counts = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        raise EngineError(E_SPLIT, f"Splitting {n} samples by {fractions} leaves the {', '.join(empty or ['train'])} "
                          f"split empty ({counts}).", "Add samples, set onboarding_options.chip_size to cut scenes "
                          "into more chips, or change onboarding_options.split.")
    return {k: sorted(v) for k, v in splits.items()}


def _remap_labels(raw: np.ndarray, nodata: Optional[float], label_map: dict[int, int], path: Path) -> np.ndarray:
    valid = valid_label_values(raw, nodata)
    values = np.unique(raw[valid]).astype(np.float64)
    if problem := label_problem(path, values, set(label_map)):  # the one check pre-scan also runs
        raise EngineError(E_PARAMS, problem[0].upper() + problem[1:] + ".", HINTS[E_PARAMS])
    lut_keys = np.array(sorted(label_map), dtype=np.int64)
    lut_vals = np.array([label_map[k] for k in lut_keys], dtype=np.int16)
    out = np.full(raw.shape, -1, dtype=np.int16)
    out[valid] = lut_vals[np.searchsorted(lut_keys, raw[valid].astype(np.int64))]
    return out


# A sample of at most this many values (width x height x bands) is written in one piece, as a COG when asked:
# GDAL's COG writer holds the GIL for the whole file (~0.1 us a value), and SIGTERM must be honoured within 2 s.
# Larger ones are streamed window by window into a tiled GeoTIFF, checking for cancellation between windows.
ONE_PIECE_VALUES = 4 * 1024 * 1024


class Stopped(Exception):
    """A worker stops early because the onboarding was cancelled or failed elsewhere."""


def memory_budget_bytes() -> int:
    """GEOSTUDIO_MEMORY_BUDGET_MB (default 2048): the most one whole-scene sample may take in memory."""
    try:
        megabytes = float(os.environ.get("GEOSTUDIO_MEMORY_BUDGET_MB") or 2048)
    except ValueError:
        megabytes = 2048
    if not math.isfinite(megabytes) or megabytes < 1:  # 'nan', 'inf', 0 or negative: the default
        megabytes = 2048
    return int(megabytes * 1024 * 1024)


def _row_steps(height: int, width: int, count: int) -> list[tuple[int, int]]:
    """(row offset, rows) strips of at most ~ONE_PIECE_VALUES values, whole 256-row tile rows where possible."""
    rows = max(1, ONE_PIECE_VALUES // max(1, width * count))
    if rows >= 256:
        rows = rows // 256 * 256
    return [(r, min(rows, height - r)) for r in range(0, height, rows)]


def _target(window: Optional[Window], src: Any) -> tuple[int, int, int, int, int, int]:
    """(col, row, width, height) of the part inside the scene, and the output's (width, height)."""
    if window is None:
        return 0, 0, src.width, src.height, src.width, src.height
    col, row = int(window.col_off), int(window.row_off)
    out_w, out_h = int(window.width), int(window.height)
    return col, row, min(out_w, src.width - col), min(out_h, src.height - row), out_w, out_h


def _image_fill(src: Any) -> tuple[Any, Optional[float]]:
    """(padding value, nodata to declare): the file's nodata; NaN for floating data without one."""
    if src.nodata is not None:
        return src.nodata, src.nodata
    if np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
        return np.nan, np.nan
    return 0, None  # integer data without nodata: padded with 0 (never counted in the statistics)


def write_item(item: Item, spec: OnboardSpec, stage: Path, label_map: dict[int, int], train: bool,
               stop: Optional[threading.Event] = None) -> dict[str, Any]:
    """Write one sample's images and label; return its statistics (train split only): per modality a
    BandStats of the pixels inside the scene (padding never counted) and the class pixel counts."""
    stop = stop or threading.Event()
    options = spec.onboarding_options
    stats: dict[str, BandStats] = {}
    for source in spec.data_sources:
        path = item.source.images[source.file_suffix]
        band_stats = stats[source.modality_tag] = BandStats(len(source.bands))
        picked = [b.index for b in source.bands]
        with open_raster(path, E_FILES) as src:
            fill, nodata = _image_fill(src)
            profile = src.profile.copy()
            profile["nodata"] = nodata
            descriptions = list(src.descriptions)
            for band in source.bands:
                if not descriptions[band.index]:
                    descriptions[band.index] = band.band_name
            dtype, count = np.dtype(src.dtypes[0]), src.count

            def image(raw: Optional[np.ndarray], rows: int, width: int, inside: int) -> np.ndarray:
                out = np.full((count, rows, width), fill, dtype=dtype)
                if raw is not None:
                    out[:, :inside, : raw.shape[2]] = raw
                    if train:
                        band_stats.add(raw[picked], src.nodata)
                return out

            out = stage / "training_data" / source.modality_tag / f"{item.sample_id}{source.file_suffix}"
            _stream(src, path, out, item.window, profile, image, options.convert_to_cog, descriptions, stop)
    counts = np.zeros(len(spec.classes()), dtype=np.int64)
    with open_raster(item.source.label, E_FILES) as src:
        profile = src.profile.copy()
        label_nodata = src.nodata
        segmentation = spec.purpose == "Segmentation"
        if segmentation:
            profile["nodata"] = -1
        elif label_nodata is None:
            profile["nodata"] = np.nan

        def label(raw: Optional[np.ndarray], rows: int, width: int, inside: int) -> np.ndarray:
            if segmentation:
                out = np.full((1, rows, width), -1, dtype=np.int16)  # padding is 'ignore', never a class
                if raw is not None:
                    out[:, :inside, : raw.shape[2]] = _remap_labels(raw, label_nodata, label_map, item.source.label)
                    if train:
                        part = out[out >= 0]
                        counts[:] += np.bincount(part.ravel(), minlength=len(counts))[: len(counts)]
                return out
            out = np.full((1, rows, width), np.nan if label_nodata is None else label_nodata, dtype=np.float32)
            if raw is not None:
                out[:, :inside, : raw.shape[2]] = raw
            return out

        out = stage / "labels" / f"{item.sample_id}{spec.label_suffix}"
        _stream(src, item.source.label, out, item.window, profile, label, False, None, stop, indexes=[1])
    return {"stats": stats if train else None, "class_counts": counts if train else None}


def _stream(src: Any, path: Path, out: Path, window: Optional[Window], profile: dict[str, Any], convert: Any,
            cog: bool, descriptions: Optional[list], stop: threading.Event, indexes: Optional[list] = None) -> None:
    """Copy the window of src (padded past the scene's edge) to out through convert(raw, rows, width, inside):
    in one piece when small (a COG if asked), else strip by strip into a tiled GeoTIFF (bounded memory, and
    cancellation is noticed between strips)."""
    col, row, in_w, in_h, out_w, out_h = _target(window, src)
    count = len(indexes) if indexes else src.count
    profile = dict(profile)
    profile["transform"] = src.window_transform(Window(col, row, out_w, out_h))

    def block(r: int, rows: int) -> np.ndarray:
        if stop.is_set():
            raise Stopped()
        inside = max(0, min(rows, in_h - r))
        raw = read(src, path, E_FILES, indexes=indexes, window=Window(col, row + r, in_w, inside)) if inside else None
        return convert(raw, rows, out_w, inside)

    try:
        if out_w * out_h * count <= ONE_PIECE_VALUES:
            write_geotiff(out, block(0, out_h), profile, cog=cog, descriptions=descriptions)
            return
        steps = _row_steps(out_h, out_w, count)
        data = block(*steps[0])
        with geotiff_writer(out, profile, count, out_w, out_h, data.dtype.name, descriptions) as dst:
            for index, (r, rows) in enumerate(steps):
                if index:
                    data = block(r, rows)
                dst.write(data, window=Window(0, r, out_w, rows))
    except (OSError, RasterioError) as exc:
        raise EngineError(E_WRITE, f"Writing {out.name} failed: {exc}.",
                          "Check the free space and permissions of the workspace folder.") from None


def onboard(spec: OnboardSpec, workspace: Workspace) -> dict[str, Any]:
    started = time.monotonic()
    log: list[str] = []

    def note(message: str) -> None:
        log.append(f"{now_iso()} {message}")
        protocol.log(message)

    try:
        return _onboard(spec, workspace, note, log, started)
    except EngineError as error:
        log.append(f"{now_iso()} failed: [{error.code}] {error.message}")
        workspace.record_failure("datasets", spec.dataset_name, error, log)
        raise


def _onboard(spec: OnboardSpec, workspace: Workspace, note: Any, log: list[str], started: float) -> dict[str, Any]:
    options = spec.onboarding_options
    protocol.progress("scan", 0.02, "pairing images and labels")
    with workspace.scratch("onboard") as scratch, materialise(spec.dataset_url, scratch) as root:
        if options.from_labels:
            from .from_labels import images_from_labels

            root, spec = images_from_labels(spec, root, scratch / "from_labels", workspace, note)
        label_ids = set(spec.label_map()) if spec.purpose == "Segmentation" else None
        need = {s.file_suffix: max(b.index for b in s.bands) + 1 for s in spec.data_sources}
        report = scan(root, spec.label_suffix, [s.file_suffix for s in spec.data_sources], need, label_ids,
                      read_labels=spec.purpose == "Segmentation", ignore_id=options.ignore_id,
                      min_side=MIN_SCENE_SIDE)
        report.raise_first()
        samples = report.samples
        note(f"found {len(samples)} paired sample(s) in {spec.dataset_url}")
        sizes = {s.stem: (report.info(s.label).width, report.info(s.label).height) for s in samples}
        if not options.chip_size:
            _check_memory_budget(spec, report, samples)
        items = plan_items(samples, sizes, options.chip_size)
        splits = split_items([i.sample_id for i in items], options.split, options.seed)
        note("split (seed %d): %s" % (options.seed, ", ".join(f"{k} {len(v)}" for k, v in splits.items())))
        split_of = {sample_id: name for name, ids in splits.items() for sample_id in ids}
        if options.convert_to_cog and (streamed := _streamed(spec, report, items)):
            note(f"{streamed} sample(s) over {ONE_PIECE_VALUES} values are streamed into tiled GeoTIFFs, not COGs "
                 "(memory stays bounded and cancelling stays prompt)")
        label_map = spec.label_map() if spec.purpose == "Segmentation" else {}
        parts: dict[int, dict[str, Any]] = {}  # item index -> its statistics (train split only)
        dataset_id = workspace.new_id("datasets", spec.dataset_name)
        with workspace.staging("datasets", dataset_id) as stage:
            for source in spec.data_sources:
                (stage / "training_data" / source.modality_tag).mkdir(parents=True)
            (stage / "labels").mkdir()
            (stage / "split_files").mkdir()
            # GDAL compresses without the GIL: a few threads keep the cores busy. At most `window` samples are
            # in flight, each streamed in bounded strips: memory does not grow with the dataset or the scene.
            # On SIGTERM (or any failure) `stop` makes every worker give up at its next strip, so the wait
            # below is one strip long, not the queue's length.
            workers = max(2, min(4, os.cpu_count() or 2))
            window = 2 * workers
            stop = threading.Event()
            pool = ThreadPoolExecutor(max_workers=workers)
            pending: dict[Future, int] = {}
            done_count = 0

            def collect(finished: set) -> None:
                nonlocal done_count
                for future in finished:
                    index = pending.pop(future)
                    written = future.result()
                    if written["stats"] is not None:
                        parts[index] = written
                    done_count += 1
                    protocol.progress("write", 0.05 + 0.85 * done_count / len(items),
                                      f"sample {done_count}/{len(items)}: {items[index].sample_id}")

            try:
                for index, item in enumerate(items):
                    if len(pending) >= window:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        collect(finished)
                    pending[pool.submit(write_item, item, spec, stage, label_map,
                                        split_of[item.sample_id] == "train", stop)] = index
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(finished)
            except BaseException:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            stats = {s.modality_tag: BandStats(len(s.bands)) for s in spec.data_sources}
            class_counts = np.zeros(len(spec.classes()), dtype=np.int64)
            for index in sorted(parts):  # merged in item order: the same data gives the same numbers
                for tag, part in parts[index]["stats"].items():
                    stats[tag].merge(part)
                class_counts += parts[index]["class_counts"]
            for name, ids in splits.items():
                (stage / "split_files" / f"{name}_data.txt").write_text("".join(f"{i}\n" for i in ids))
            protocol.progress("stats", 0.92, "per-band statistics of the training split")
            train_files = {s.file_suffix: sorted({items[i].source.images[s.file_suffix].name for i in parts})
                           for s in spec.data_sources}
            training_params = _training_params(spec, report, samples, stats, train_files)
            size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
            note(f"wrote {len(items)} sample(s), {size / 1e6:.1f} MB, in {time.monotonic() - started:.1f} s")
            classes = spec.classes()
            record = {
                "dataset_id": dataset_id,
                "dataset_name": spec.dataset_name,
                "description": spec.description or "",
                "purpose": spec.purpose,
                "status": "Succeeded",
                "created": now_iso(),
                "version": spec.version,
                "source": spec.dataset_url,
                "size_bytes": size,
                "n_samples": len(items),
                "modalities": [s.modality_tag for s in spec.data_sources],
                "data_sources": [s.model_dump() for s in spec.data_sources],
                "label_suffix": spec.label_suffix,
                "label_categories": [c.model_dump() for c in spec.label_categories],
                "ignore_id": options.ignore_id,
                "label_map": {str(k): v for k, v in label_map.items()},
                "classes": [{"index": i, "id": c.id, "name": c.name, "color": c.color, "opacity": c.opacity,
                             "train_pixels": int(class_counts[i])} for i, c in enumerate(classes)],
                "splits": splits,
                "onboarding_options": options.model_dump(),
                "spec": spec.model_dump(mode="json"),  # the payload as validated (for re-onboarding or the Studio)
                "training_params": training_params,
                "log": log,
            }
            write_json(stage / "dataset.json", record)
    protocol.progress("done", 1.0, f"dataset {dataset_id} ready")
    return record


def _streamed(spec: OnboardSpec, report: Any, items: list[Item]) -> int:
    """How many items have an image written strip by strip (over ONE_PIECE_VALUES values)."""
    count = 0
    for item in items:
        for source in spec.data_sources:
            info = report.info(item.source.images[source.file_suffix])
            width, height = (int(item.window.width), int(item.window.height)) if item.window else (info.width,
                                                                                                    info.height)
            if width * height * info.count > ONE_PIECE_VALUES:
                count += 1
                break
    return count


def _check_memory_budget(spec: OnboardSpec, report: Any, samples: list[Sample]) -> None:
    """Without chip_size every scene is one training sample, read whole by every training step: refuse, before
    reading any pixel, a scene that needs more memory than the budget (GEOSTUDIO_MEMORY_BUDGET_MB)."""
    budget = memory_budget_bytes()
    over = []
    for sample in samples:
        label = report.info(sample.label)
        need = label.width * label.height * np.dtype(label.dtype).itemsize
        for source in spec.data_sources:
            info = report.info(sample.images[source.file_suffix])
            need += info.width * info.height * info.count * np.dtype(info.dtype).itemsize
        if need > budget:
            over.append((need, sample))
    if over:
        over.sort(key=lambda pair: -pair[0])
        named = ", ".join(f"{next(iter(s.images.values())).name} ({report.info(s.label).width}x"
                          f"{report.info(s.label).height}, {n / 2**20:.0f} MB)" for n, s in over[:5])
        more = f" and {len(over) - 5} more" if len(over) > 5 else ""
        raise EngineError(E_TOO_LARGE, f"{len(over)} scene(s) need more memory as one training sample than the "
                          f"budget of {budget / 2**20:.0f} MB: {named}{more}.",
                          "Set onboarding_options.chip_size (e.g. 256 or 512) to cut scenes into chips, or raise "
                          "the budget with the environment variable GEOSTUDIO_MEMORY_BUDGET_MB if this machine "
                          "has the memory.")


def _files_named(names: list[str], limit: int = 6) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _non_finite(value: Any, where: str) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [where]
    if isinstance(value, dict):
        return [w for k, v in value.items() for w in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, (list, tuple)):
        return [w for i, v in enumerate(value) for w in _non_finite(v, f"{where}[{i}]")]
    return []


def _training_params(spec: OnboardSpec, report: Any, samples: list[Sample], stats: dict[str, BandStats],
                     train_files: Optional[dict[str, list[str]]] = None) -> dict:
    training_params: dict[str, Any] = {}
    for source in spec.data_sources:
        band_stats = stats[source.modality_tag]
        if empty := band_stats.empty_bands():
            names = [source.bands[i].band_name for i in empty]
            raise EngineError(E_STATS, f"{source.modality_tag} band(s) {names} have no valid pixel in the "
                              "training split (all nodata).", "Check the band indices and the files' nodata value.")
        if constant := band_stats.constant_bands():
            names = [source.bands[i].band_name for i in constant]
            files = _files_named((train_files or {}).get(source.file_suffix, []))
            raise EngineError(E_STATS, f"{source.modality_tag} band(s) {names} hold one value only "
                              f"({band_stats.means()[constant[0]]:g}) in every training file ({files}): "
                              "a band without variation cannot be normalised.",
                              "Drop that band from the data source, or check the band indices and the files.")
        first = report.info(samples[0].images[source.file_suffix])
        training_params[source.modality_tag] = {
            "norm_means": band_stats.means(),
            "norm_stds": band_stats.stds(),
            "bands": [b.index for b in source.bands],
            "band_names": [b.band_name for b in source.bands],
            "band_count": first.count,
            "scaling_factors": source.band_scales(),
            "rgb_indices": source.rgb_indices(),
            "nodata": first.nodata,
            "file_suffix": f"*{source.file_suffix}",
            "train_data_dir": f"training_data/{source.modality_tag}",
            "train_labels_dir": "labels",
            "align_dates": source.align_dates,
        }
    classes = spec.classes()
    weights = [c.weight for c in classes]
    training_params.update({f"{name}_split_path": f"split_files/{name}_data.txt" for name in SPLITS})
    training_params.update({
        "classes": [str(c.id) for c in classes],
        "class_weights": weights if classes and all(w is not None for w in weights) else None,
        "label_suffix": f"*{spec.label_suffix}",
    })
    # nodata may be NaN (stored as null, read back as 'no value'); every other number must be finite
    bad = [w for w in _non_finite({k: v for k, v in training_params.items()}, "training_params")
           if not w.endswith(".nodata")]
    if bad:
        raise EngineError(E_PARAMS, f"The dataset would store non-finite numbers (NaN or infinity) in "
                          f"{', '.join(bad[:6])}; nothing was kept.",
                          "Give finite class weights and scaling factors; check the files for infinite values.")
    return training_params


def run(spec: OnboardSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = onboard(spec, workspace)
    folder = workspace.dir("datasets") / record["dataset_id"]
    return ({"dataset_dir": str(folder), "dataset_json": str(folder / "dataset.json")},
            {"dataset_id": record["dataset_id"], "n_samples": record["n_samples"],
             "splits": {k: len(v) for k, v in record["splits"].items()},
             "training_params": record["training_params"]})
