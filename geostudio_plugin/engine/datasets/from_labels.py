"""Onboarding from labels alone: Terrakit finds and fetches the imagery for each label's area and date.

Terrakit's own pipeline does it (process_labels -> download_data, once per data source), with GeoStudio's
connector layer around it: credentials from the job's environment, endpoint overrides, timeouts and retries.
Each source takes the scene closest to the label's date within the window. With several sources (multi-modal),
every tile is put on the primary (first) source's grid, so image and label pixels line up across modalities,
and a tile that some source could not supply is dropped with a note. The result onboards like any folder.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from .. import protocol
from ..connectors import access
from ..connectors.session import ConnectorSession, open_collection
from ..protocol import EngineError
from ..specs import DataSource
from .scan import E_FILES, E_PARAMS, E_PREPARE, E_SOURCE
from .spec import OnboardSpec

LABEL_SUFFIX = ".label.tif"
FETCHED = re.compile(r"^(?P<tile>(_tile_\d+_\d+)?)_(?P<date>\d{4}-\d{2}-\d{2})_imputed\.tif$")
NODATA = -9999.0


@dataclass
class Fetched:
    image: Path
    label: Path
    date: str


LABEL_RULE = ("Label files must be GeoJSON polygons (.geojson/.json, label_type vector) or GeoTIFF rasters with 1 on "
              "the labelled pixels (.tif/.tiff, label_type raster), each named with its date: <name>_YYYY-MM-DD.<ext> "
              "(optionally _CLASS_<n>_ for the class id).")
DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
CLASS = re.compile(r"_CLASS_(\d+)_")
EXTENSIONS = {"vector": (".geojson", ".json"), "raster": (".tif", ".tiff")}


def label_files(root: Path, label_type: Optional[str]) -> tuple[str, list[Path]]:
    """The label files (any depth, any case of extension) and their type: as given, else what the folder holds."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    by_type = {kind: [p for p in files if p.suffix.lower() in ext] for kind, ext in EXTENSIONS.items()}
    kind = label_type or ("vector" if by_type["vector"] or not by_type["raster"] else "raster")
    if not by_type[kind]:
        raise EngineError(E_FILES, f"No {kind} label file ({', '.join(EXTENSIONS[kind])}) in {root}.",
                          LABEL_RULE + " Set onboarding_options.label_type to match the files.")
    return kind, by_type[kind]


def stage_labels(files: list[Path], kind: str, root: Path, staged: Path) -> None:
    """Give Terrakit the files as it reads them: one flat folder, lower-case extension, the date first.

    Terrakit 0.2.2 globs only the top level (`*json`, `*tif`), reads a vector label's date as YYYY-MM-DD but a
    raster label's as the first 6-8 digit group, and skips (only logs) a file it cannot date. Users get one
    rule; an undated or impossible date is named here.
    """
    dated, bad = [], []
    for path in files:
        found = DATE.search(path.name)
        if found and _real_date(found.group(0)):
            dated.append((path, found))
        else:
            bad.append(str(path.relative_to(root)))
    if bad:
        raise EngineError(E_FILES, f"Label file(s) without a valid date in the name: {', '.join(bad[:5])}"
                          f"{' …' if len(bad) > 5 else ''} (in {root}).", LABEL_RULE)
    staged.mkdir(parents=True)
    for n, (path, day) in enumerate(dated):
        label_class = CLASS.search(path.name)
        date = day.group(0) if kind == "vector" else "".join(day.groups())
        extension = ".geojson" if kind == "vector" else ".tif"
        target = staged / f"{date}{f'_CLASS_{label_class.group(1)}_' if label_class else '_'}n{n}{extension}"
        try:
            os.link(path, target)
        except OSError:  # other device, no hard links there, or not the user's file (protected_hardlinks)
            shutil.copyfile(path, target)


def _real_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def image_suffix(source: DataSource) -> str:
    """`+` cannot be in a modality tag, so no suffix ends another (`_NDVI.tif` would end `_S2_NDVI.tif`)."""
    return f"+{source.modality_tag}.tif"


def images_from_labels(spec: OnboardSpec, labels_root: Path, work: Path, workspace: Any,
                       note: Callable[[str], None] = protocol.log) -> tuple[Path, OnboardSpec]:
    """`note` records into the dataset's log which scene (date) each tile got from each source."""
    options = spec.onboarding_options
    primary = spec.data_sources[0].connector
    for i, source in enumerate(spec.data_sources):
        if not source.connector or not source.collection:
            raise EngineError(E_PARAMS, f"from_labels needs data_sources[{i}]'s connector and collection.",
                              f"Set data_sources[{i}].connector and .collection (pick them in the Connectors dock).")
        access.check_credentials(source.connector, options.endpoint_for(source.connector, primary))  # fail early
    work.mkdir(parents=True, exist_ok=True)
    name = "labels"
    protocol.progress("labels", 0.03, "reading labels")
    import terrakit

    kind, files = label_files(labels_root, options.label_type)
    stage_labels(files, kind, labels_root, work / "label_files")
    note(f"{len(files)} {kind} label file(s)")
    try:
        terrakit.process_labels(labels_folder=str(work / "label_files"), dataset_name=name, working_dir=str(work),
                                label_type=kind, datetime_info="filename")
    except Exception as exc:  # noqa: BLE001 - Terrakit raises many kinds; the user needs the folder and the rule
        raise EngineError(E_FILES, f"Could not read the labels in {labels_root}: "
                          f"{protocol.redact(str(exc))[:300]}", LABEL_RULE) from None
    if not (work / f"{name}_labels.shp").exists():  # Terrakit logs a bad file and goes on without it
        raise EngineError(E_FILES, f"None of the label files in {labels_root} could be read as {kind} labels.",
                          LABEL_RULE)
    sessions = [open_collection(source.connector, source.collection, options.endpoint_for(source.connector, primary),
                                workspace, bands=[b.band_name for b in source.bands]) for source in spec.data_sources]
    fetched: list[dict[str, Fetched]] = []
    for i, (source, session) in enumerate(zip(spec.data_sources, sessions)):
        share = 0.15 / len(spec.data_sources)
        fetched.append(_download(session, source, options, work, name, 0.05 + i * share, note))
    aligned = work / "aligned"
    aligned.mkdir()
    kept = _align(spec, fetched, aligned, note)
    if not kept:
        raise EngineError(E_SOURCE, "No label tile has imagery from every data source.",
                          f"Widen the date window (pre_days/post_days, now {options.pre_days}/{options.post_days}), "
                          "raise max_cloud_cover, or onboard fewer data sources.")
    onboarded = spec.model_copy(deep=True)
    onboarded.dataset_url = str(aligned)
    onboarded.label_suffix = LABEL_SUFFIX
    for source in onboarded.data_sources:
        source.file_suffix = image_suffix(source)
        for index, band in enumerate(source.bands):
            band.index = index  # a fetched file holds exactly the requested bands, in order
    onboarded.onboarding_options.from_labels = False
    if onboarded.onboarding_options.chip_size is None:
        onboarded.onboarding_options.chip_size = 256  # the Studio's default sample_dim
    return aligned, onboarded


def _download(session: ConnectorSession, source: DataSource, options: Any, work: Path, name: str, at: float,
              note: Callable[[str], None]) -> dict[str, Fetched]:
    """One source's scenes (and rasterised labels), keyed by Terrakit's tile suffix."""
    coll = session.collection
    folder = work / source.modality_tag
    folder.mkdir()
    protocol.progress("download", at, f"fetching {coll['collection']} for each label")
    import terrakit

    with session.errors(f"fetching {coll['collection']} for the labels"):
        queried = terrakit.download_data(
            data_sources=[{"data_connector": source.connector, "collection_name": coll["collection"],
                           "bands": session.bands, "save_file": ""}],
            date_allowance={"pre_days": options.pre_days, "post_days": options.post_days},
            transform={"scale_data_xarray": True, "impute_nans": True, "reproject": True},
            dataset_name=name, working_dir=str(folder), max_cloud_cover=int(options.max_cloud_cover),
            datetime_bbox_shp_file=str(work / f"{name}_all_bboxes.shp"),
            labels_shp_file=str(work / f"{name}_labels.shp"), keep_files=False)
    prefix = f"{source.connector}_{coll['collection']}"
    found: dict[str, Fetched] = {}
    for path in sorted({Path(q) for q in queried}):
        match = FETCHED.match(path.name[len(prefix):]) if path.name.startswith(prefix) else None
        label = path.with_name(path.name[:-len(".tif")] + "_label.tif")
        if match is None or not label.exists():
            raise EngineError(E_PREPARE, f"Unexpected file from Terrakit's download: {path.name}.",
                              "Report this with the engine log; the Terrakit version may have changed its naming.")
        if match["tile"] in found:
            raise EngineError(E_PREPARE, f"{coll['collection']}: two scenes for one label tile ({path.name}).",
                              "Give each label file its own date, or onboard fewer label files at once.")
        found[match["tile"]] = Fetched(path, label, match["date"])
    if not found:
        raise EngineError(E_SOURCE, f"{coll['collection']}: no imagery found for any label.",
                          f"Widen the date window (pre_days/post_days, now {options.pre_days}/{options.post_days}) "
                          "or raise max_cloud_cover.")
    note(f"{source.connector}/{coll['collection']}: fetched {len(found)} scene(s) for the labels: "
         + ", ".join(os.path.basename(f.image) for f in found.values()))
    return found


def _align(spec: OnboardSpec, fetched: list[dict[str, Fetched]], out: Path, note: Callable[[str], None]) -> int:
    """Write `<tile>_<date><suffix>` per source on the primary's grid, plus the primary's label."""
    kept = 0
    for source, scenes in zip(spec.data_sources[1:], fetched[1:]):
        for tile in sorted(set(scenes) - set(fetched[0])):
            note(f"label tile {tile.strip('_')}: a {source.modality_tag} scene but no "
                 f"{spec.data_sources[0].modality_tag} scene (the primary source); tile dropped")
    for tile, first in sorted(fetched[0].items()):
        missing = [s.modality_tag for s, f in zip(spec.data_sources[1:], fetched[1:]) if tile not in f]
        if missing:
            note(f"label tile {tile.strip('_') or first.date}: no {', '.join(missing)} scene; tile dropped")
            continue
        stem = f"{tile.strip('_') or 'scene'}_{first.date}"
        shutil.copyfile(first.label, out / f"{stem}{LABEL_SUFFIX}")
        shutil.copyfile(first.image, out / f"{stem}{image_suffix(spec.data_sources[0])}")
        dates = [first.date]
        for source, scenes in zip(spec.data_sources[1:], fetched[1:]):
            _warp_onto(scenes[tile].image, first.image, out / f"{stem}{image_suffix(source)}")
            dates.append(scenes[tile].date)
        if len(dates) > 1:
            note(f"{stem}: dates " + ", ".join(f"{s.modality_tag} {d}" for s, d in zip(spec.data_sources,
                                                                                                 dates)))
        kept += 1
    return kept


def _warp_onto(image: Path, reference: Path, target: Path) -> None:
    """Resample `image` onto `reference`'s grid: bilinear for measurements, nearest for integer (categorical)
    bands; outside its footprint -> nodata (its own where float32 holds it exactly, else -9999)."""
    import numpy as np
    import rasterio
    from rasterio.warp import Resampling, reproject

    with rasterio.open(reference) as ref, rasterio.open(image) as src:
        if (src.crs, src.transform, src.shape) == (ref.crs, ref.transform, ref.shape):
            shutil.copyfile(image, target)
            return
        source_nodata = src.nodata
        keeps = source_nodata is not None and (np.isnan(source_nodata)
                                               or float(np.float32(source_nodata)) == float(source_nodata))
        nodata = float(source_nodata) if keeps else NODATA
        integer = np.issubdtype(np.dtype(src.dtypes[0]), np.integer)
        data = np.full((src.count, ref.height, ref.width), nodata, dtype="float32")
        reproject(source=rasterio.band(src, list(range(1, src.count + 1))), destination=data,
                  src_nodata=source_nodata, dst_transform=ref.transform, dst_crs=ref.crs, dst_nodata=nodata,
                  resampling=Resampling.nearest if integer else Resampling.bilinear)
        profile = {"driver": "GTiff", "width": ref.width, "height": ref.height, "count": src.count,
                   "dtype": "float32", "crs": ref.crs, "transform": ref.transform, "nodata": nodata,
                   "compress": "DEFLATE"}
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(data)
            for i, description in enumerate(src.descriptions, start=1):
                if description:
                    dst.set_band_description(i, description)
