"""Onboard a dataset: pair, check, split, write a TerraTorch-ready folder, compute statistics.

Layout of ``<workspace>/datasets/<dataset_id>/`` (paths in dataset.json are relative to it):
  training_data/<MODALITY>/<sample><file_suffix>   images (all bands kept, COG by default)
  labels/<sample><label_suffix>                    int16 class indices, -1 = ignore
  split_files/{train,val,test}_data.txt            one sample id per line
  dataset.json                                     spec, splits, training_params, log
"""

from __future__ import annotations

import os
import random
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
from ..rasters import chip_windows, open_raster, read, write_geotiff
from ..workspace import Workspace, now_iso, write_json
from .scan import E_FILES, E_PARAMS, E_SPLIT, E_STATS, E_WRITE, Sample, scan
from .source import materialise
from .spec import OnboardSpec
from .stats import BandStats

SPLITS = ("train", "val", "test")


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
    valid = np.isfinite(raw)
    if nodata is not None and not np.isnan(nodata):
        valid &= raw != nodata
    values = raw[valid]
    if values.size and not np.array_equal(values, np.round(values)):
        raise EngineError(E_PARAMS, f"Label file {path} holds non-integer values.",
                          "Labels of a segmentation dataset must be integer class ids.")
    ids = np.unique(values.astype(np.int64))
    unknown = [int(v) for v in ids if int(v) not in label_map]
    if unknown:
        raise EngineError(E_PARAMS, f"Label file {path} holds value(s) {unknown[:10]} that are not label categories "
                          f"(known ids: {sorted(label_map)}).",
                          "Add a label category for each value, or set onboarding_options.ignore_id to the "
                          "value that means 'not labelled'.")
    lut_keys = np.array(sorted(label_map), dtype=np.int64)
    lut_vals = np.array([label_map[k] for k in lut_keys], dtype=np.int16)
    out = np.full(raw.shape, -1, dtype=np.int16)
    out[valid] = lut_vals[np.searchsorted(lut_keys, raw[valid].astype(np.int64))]
    return out


def _padded(window: Optional[Window], src: Any) -> bool:
    return window is not None and (window.col_off + window.width > src.width or
                                   window.row_off + window.height > src.height)


def _write(path: Path, data: np.ndarray, profile: dict[str, Any], **options: Any) -> None:
    try:
        write_geotiff(path, data, profile, **options)
    except (OSError, RasterioError) as exc:
        raise EngineError(E_WRITE, f"Writing {path.name} failed: {exc}.",
                          "Check the free space and permissions of the workspace folder.") from None


def write_item(item: Item, spec: OnboardSpec, stage: Path, label_map: dict[int, int], train: bool) -> dict[str, Any]:
    """Write one sample's images and label; return the pixels the statistics need (train split only)."""
    options = spec.onboarding_options
    pixels: dict[str, tuple[np.ndarray, Optional[float]]] = {}
    for source in spec.data_sources:
        path = item.source.images[source.file_suffix]
        with open_raster(path, E_FILES) as src:
            pad = _padded(item.window, src)
            fill = src.nodata if src.nodata is not None and np.isfinite(src.nodata) else 0
            data = read(src, path, E_FILES, window=item.window, boundless=pad, fill_value=fill if pad else None)
            profile = src.profile.copy()
            profile["transform"] = src.window_transform(item.window) if item.window else src.transform
            descriptions = list(src.descriptions)
            nodata = src.nodata
        for band in source.bands:
            if not descriptions[band.index]:
                descriptions[band.index] = band.band_name
        if train:
            pixels[source.modality_tag] = (data[[b.index for b in source.bands]], nodata)
        out = stage / "training_data" / source.modality_tag / f"{item.sample_id}{source.file_suffix}"
        _write(out, data, profile, cog=options.convert_to_cog, descriptions=descriptions)
    with open_raster(item.source.label, E_FILES) as src:
        pad = _padded(item.window, src)
        fill = src.nodata if src.nodata is not None else options.ignore_id  # padding is never a class
        raw = read(src, item.source.label, E_FILES, indexes=1, window=item.window, boundless=pad,
                   fill_value=fill if pad else None)
        profile = src.profile.copy()
        profile["transform"] = src.window_transform(item.window) if item.window else src.transform
        label_nodata = src.nodata
    if spec.purpose == "Segmentation":
        labels = _remap_labels(raw, label_nodata, label_map, item.source.label)
        profile["nodata"] = -1
    else:
        labels = raw.astype(np.float32)
    _write(stage / "labels" / f"{item.sample_id}{spec.label_suffix}", labels[None], profile)
    return {"pixels": pixels, "labels": labels if train else None}


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
                      read_labels=spec.purpose == "Segmentation", ignore_id=options.ignore_id)
        report.raise_first()
        samples = report.samples
        note(f"found {len(samples)} paired sample(s) in {spec.dataset_url}")
        sizes = {s.stem: (report.info(s.label).width, report.info(s.label).height) for s in samples}
        items = plan_items(samples, sizes, options.chip_size)
        splits = split_items([i.sample_id for i in items], options.split, options.seed)
        note("split (seed %d): %s" % (options.seed, ", ".join(f"{k} {len(v)}" for k, v in splits.items())))
        split_of = {sample_id: name for name, ids in splits.items() for sample_id in ids}
        label_map = spec.label_map() if spec.purpose == "Segmentation" else {}
        stats = {s.modality_tag: BandStats(len(s.bands)) for s in spec.data_sources}
        class_counts = np.zeros(len(spec.classes()), dtype=np.int64)
        dataset_id = workspace.new_id("datasets", spec.dataset_name)
        with workspace.staging("datasets", dataset_id) as stage:
            for source in spec.data_sources:
                (stage / "training_data" / source.modality_tag).mkdir(parents=True)
            (stage / "labels").mkdir()
            (stage / "split_files").mkdir()
            # GDAL compresses without the GIL: a few threads keep the cores busy. At most `window` samples are
            # in flight, and a sample's pixels are dropped once counted: memory does not grow with the dataset.
            workers = max(2, min(4, os.cpu_count() or 2))
            window = 2 * workers
            pool = ThreadPoolExecutor(max_workers=workers)
            pending: dict[Future, Item] = {}
            done_count = 0

            def collect(finished: set) -> None:
                nonlocal done_count
                for future in finished:
                    item = pending.pop(future)
                    written = future.result()
                    if split_of[item.sample_id] == "train":
                        for tag, (pixels, nodata) in written["pixels"].items():
                            stats[tag].add(pixels, nodata)
                        labels = written["labels"]
                        if spec.purpose == "Segmentation":
                            class_counts[:] += np.bincount(labels[labels >= 0].ravel(),
                                                           minlength=len(class_counts))[: len(class_counts)]
                    done_count += 1
                    protocol.progress("write", 0.05 + 0.85 * done_count / len(items),
                                      f"sample {done_count}/{len(items)}: {item.sample_id}")

            try:
                for item in items:
                    if len(pending) >= window:
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        collect(finished)
                    pending[pool.submit(write_item, item, spec, stage, label_map,
                                        split_of[item.sample_id] == "train")] = item
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    collect(finished)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            for name, ids in splits.items():
                (stage / "split_files" / f"{name}_data.txt").write_text("".join(f"{i}\n" for i in ids))
            protocol.progress("stats", 0.92, "per-band statistics of the training split")
            training_params = _training_params(spec, report, samples, stats)
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


def _training_params(spec: OnboardSpec, report: Any, samples: list[Sample], stats: dict[str, BandStats]) -> dict:
    training_params: dict[str, Any] = {}
    for source in spec.data_sources:
        band_stats = stats[source.modality_tag]
        if empty := band_stats.empty_bands():
            names = [source.bands[i].band_name for i in empty]
            raise EngineError(E_STATS, f"{source.modality_tag} band(s) {names} have no valid pixel in the "
                              "training split (all nodata).", "Check the band indices and the files' nodata value.")
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
    return training_params


def run(spec: OnboardSpec, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    record = onboard(spec, workspace)
    folder = workspace.dir("datasets") / record["dataset_id"]
    return ({"dataset_dir": str(folder), "dataset_json": str(folder / "dataset.json")},
            {"dataset_id": record["dataset_id"], "n_samples": record["n_samples"],
             "splits": {k: len(v) for k, v in record["splits"].items()},
             "training_params": record["training_params"]})
