"""Find image/label files, pair them by stem and check them, before anything is written.

``scan`` collects every problem (pre-scan shows them all); onboarding stops on the first kind of
problem with all its instances listed. Error codes are the Studio dataset factory's, by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from ..protocol import EngineError
from ..rasters import RasterInfo, open_raster, raster_info

# The Studio dataset factory's errors, by name (``errors``: 0001, 0002, 0003, 0004, 0005, 0007, 0008, 0011, 0012).
E_SOURCE, E_FILES, E_DIMENSIONS, E_STEMS, E_SPLIT, E_STATS, E_WRITE, E_PARAMS, E_PREPARE = (
    "dataset_source", "dataset_files", "dataset_dimensions", "dataset_pairing", "dataset_split", "dataset_bands",
    "dataset_write", "dataset_params", "dataset_prepare")

HINTS = {
    E_FILES: "Check the suffixes against the file names (they include the extension, e.g. '_LabelHand.tif'), "
             "and replace unreadable files with valid GeoTIFFs.",
    E_DIMENSIONS: "An image and its label must share size, CRS and grid; re-export them on one grid.",
    E_STEMS: "Every label needs one image per data source with the same stem once the suffixes are removed; "
             "add the missing files or remove the extra ones.",
    E_STATS: "Fix the band indices (0-based) in that data source, or check that the files are the right product.",
    E_PARAMS: "Add a label category for each value, or set onboarding_options.ignore_id to the value that means "
              "'not labelled'.",
}


@dataclass
class Sample:
    stem: str
    images: dict[str, Path]  # file suffix -> file
    label: Path


@dataclass
class ScanReport:
    root: Path
    label_suffix: str
    suffixes: list[str]
    samples: list[Sample] = field(default_factory=list)
    infos: dict[str, RasterInfo] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    counts: dict[str, int] = field(default_factory=dict)
    label_values: list[int] = field(default_factory=list)

    def add(self, code: str, message: str) -> None:
        self.problems.append((code, message))

    def raise_first(self) -> None:
        if not self.problems:
            return
        code = self.problems[0][0]
        same = [m for c, m in self.problems if c == code]
        listing = "; ".join(same[:6]) + (f"; and {len(same) - 6} more" if len(same) > 6 else "")
        raise EngineError(code, listing + ("" if listing.endswith(".") else "."), HINTS.get(code, ""))

    def info(self, path: Path) -> RasterInfo:
        return self.infos[str(path)]


# The smallest scene side any template can take: the ResNet/ViT backbones downsample by 32, so a smaller
# image (or a 1 x 1 one, whose band std is 0) fails inside the model or the loss at tune time.
MIN_SCENE_SIDE = 32


def label_problem(path: Path, values: np.ndarray, label_ids: Optional[set[int]]) -> Optional[str]:
    """THE label check, shared by pre-scan and onboarding: distinct valid raw values (nodata and NaN left out)
    must be integers, and (for segmentation) label category ids. None when the values are fine."""
    if values.size and not np.array_equal(values, np.round(values)):
        odd = values[values != np.round(values)][:3]
        return (f"label file {path} holds non-integer values (e.g. {', '.join(f'{v:g}' for v in odd)}); "
                "labels of a segmentation dataset must be integer class ids")
    if label_ids is not None and (outside := sorted({int(v) for v in values} - label_ids)):
        return (f"label file {path} holds value(s) {outside[:10]} that are not label categories "
                f"(known ids: {sorted(label_ids)})")
    return None


def _names(stems: Iterable[str], limit: int = 8) -> str:
    stems = sorted(stems)
    more = f" and {len(stems) - limit} more" if len(stems) > limit else ""
    return ", ".join(stems[:limit]) + more


def _files(root: Path) -> list[Path]:
    """Every regular file under root (sorted), found by walking: no pattern is ever built from a suffix."""
    out = []
    for folder, _, names in os.walk(root):
        out.extend(Path(folder) / n for n in names if not n.startswith("."))
    return sorted(p for p in out if p.is_file())


def _by_stem(root: Path, suffix: str, exclude: tuple[str, ...], what: str, report: ScanReport,
             files: Optional[list[Path]] = None) -> dict[str, Path]:
    """Files whose name ends with suffix, matched literally ('[', '*', '?' are characters, not patterns)."""
    found: dict[str, Path] = {}
    for path in files if files is not None else _files(root):
        if not path.name.endswith(suffix) or len(path.name) <= len(suffix) or path.name.endswith(exclude):
            continue
        stem = path.name[: -len(suffix)]
        if stem in found:
            report.add(E_FILES, f"two {what} files share the stem '{stem}': {found[stem]} and {path}")
            continue
        found[stem] = path
    return found


def seen_endings(files: list[Path], limit: int = 6) -> str:
    """What the folder does hold, for a suffix that matched nothing: the names' endings from their last '_'
    (else their extension), most common first, e.g. "_S1.tif (6), _LabelHand.tif (6)"."""
    counts: dict[str, int] = {}
    for path in files:
        name = path.name
        cut = name.rfind("_")
        ending = name[cut:] if cut > 0 else (path.suffix or name)
        counts[ending] = counts.get(ending, 0) + 1
    if not counts:
        return "it holds no file"
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    more = f", and {len(counts) - limit} other ending(s)" if len(counts) > limit else ""
    return f"its {len(files)} file(s) end in " + ", ".join(f"'{e}' ({n})" for e, n in top) + more


def scan(root: Path, label_suffix: str, suffixes: list[str], band_need: Optional[dict[str, int]] = None,
         label_ids: Optional[set[int]] = None, read_labels: bool = True, ignore_id: int = -1,
         min_side: int = 0) -> ScanReport:
    """Pair by stem, read every header, and check sizes (at least min_side pixels a side), CRS, band counts
    and label values."""
    report = ScanReport(root=root, label_suffix=label_suffix, suffixes=list(suffixes))
    files = _files(root)
    labels = _by_stem(root, label_suffix, (), "label", report, files)
    report.counts[label_suffix] = len(labels)
    if not labels:
        report.add(E_FILES, f"no file in {root} ends with the label suffix '{label_suffix}' "
                            f"({seen_endings(files)})")
    images: dict[str, dict[str, Path]] = {}
    for suffix in suffixes:
        images[suffix] = _by_stem(root, suffix, (label_suffix,), suffix, report, files)
        report.counts[suffix] = len(images[suffix])
        if not images[suffix]:
            report.add(E_FILES, f"no file in {root} ends with the data suffix '{suffix}' ({seen_endings(files)})")
    if not labels or not all(images.values()):
        return report
    for suffix, by_stem in images.items():
        if missing := labels.keys() - by_stem.keys():
            report.add(E_STEMS, f"{len(missing)} label(s) without a '{suffix}' image: {_names(missing)}")
        if orphans := by_stem.keys() - labels.keys():
            report.add(E_STEMS, f"{len(orphans)} '{suffix}' image(s) without a label: {_names(orphans)}")
    paired = sorted(s for s in labels if all(s in images[x] for x in suffixes))
    _check_unambiguous(paired, report)
    values: set[int] = set()
    for stem in paired:
        sample = Sample(stem, {x: images[x][stem] for x in suffixes}, labels[stem])
        label = _header(sample.label, report)
        heads = {x: _header(p, report) for x, p in sample.images.items()}
        if label is None or None in heads.values():
            continue
        for suffix, info in heads.items():
            if min(info.width, info.height) < min_side:
                report.add(E_DIMENSIONS, f"{info.path.name} is {info.width}x{info.height} pixels, smaller than "
                           f"{min_side}x{min_side}, the smallest scene a model template can take "
                           "(remove it, or merge it into a larger scene)")
            elif (info.width, info.height) != (label.width, label.height):
                report.add(E_DIMENSIONS, f"{info.path.name} is {info.width}x{info.height} but its label "
                           f"{label.path.name} is {label.width}x{label.height}")
            elif info.crs != label.crs:
                def where(i: RasterInfo) -> str:
                    return f"is in {i.crs}" if i.crs else "has no CRS"
                report.add(E_DIMENSIONS, f"{info.path.name} {where(info)} but its label {label.path.name} "
                           f"{where(label)}")
            elif not np.allclose(info.transform, label.transform, rtol=0, atol=1e-6 * max(1.0, abs(label.transform[0]))):
                report.add(E_DIMENSIONS, f"{info.path.name} and its label {label.path.name} are not on the same "
                           "grid (their geotransforms differ)")
            need = (band_need or {}).get(suffix, 0)
            if info.count < need:
                report.add(E_STATS, f"{info.path} has {info.count} band(s) but its data source lists band index "
                           f"{need - 1}")
        if label_ids is not None and label.nodata is not None and np.isfinite(label.nodata) \
                and int(label.nodata) in label_ids and int(label.nodata) != ignore_id:
            report.add(E_PARAMS, f"label file {label.path.name} declares nodata = {label.nodata:g}, which is also the "
                       f"category id {int(label.nodata)}: that class would be read as 'no data'")
        if read_labels:
            found = label_values(sample.label, label.nodata)
            if problem := label_problem(sample.label, found, label_ids):
                report.add(E_PARAMS, problem)
            values.update(int(v) for v in found if v == round(v))
        report.samples.append(sample)
    report.label_values = sorted(values)
    return report


def _header(path: Path, report: ScanReport) -> Optional[RasterInfo]:
    try:
        info = raster_info(path, E_FILES, geotiff=True)
    except EngineError as exc:
        report.add(E_FILES, exc.message.rstrip("."))
        return None
    report.infos[str(path)] = info
    return info


def valid_label_values(block: np.ndarray, nodata: Optional[float]) -> np.ndarray:
    """The mask of a label block's valid pixels: finite, and not the file's nodata."""
    valid = np.isfinite(block) if np.issubdtype(block.dtype, np.floating) else np.ones(block.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= block != nodata
    return valid


def label_values(path: Path, nodata: Optional[float]) -> np.ndarray:
    """Distinct raw values (float64) of a label raster, nodata and NaN left out, read block by block."""
    found: set[float] = set()
    with open_raster(path, E_FILES, geotiff=True) as src:
        for _, window in src.block_windows(1):
            block = src.read(1, window=window)
            found.update(np.unique(block[valid_label_values(block, nodata)]).astype(np.float64).tolist())
    return np.array(sorted(found), dtype=np.float64)


def _check_unambiguous(stems: list[str], report: ScanReport) -> None:
    """TerraTorch matches split-file lines as substrings of file names; no stem may contain another."""
    ordered = sorted(stems, key=len)
    for i, short in enumerate(ordered):
        for longer in ordered[i + 1:]:
            if short in longer:
                report.add(E_STEMS, f"stem '{short}' is part of stem '{longer}', so a split file could not tell "
                           "them apart; rename one of them")
                return
