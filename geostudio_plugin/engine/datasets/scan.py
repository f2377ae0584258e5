"""Find image/label files, pair them by stem and check them before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from ..protocol import EngineError
from ..rasters import RasterInfo, raster_info
from .spec import OnboardSpec

# Error codes of the Studio's dataset factory (geostudio-studio.md, section 2.3).
E_SOURCE, E_FILES, E_DIMENSIONS, E_STEMS, E_SPLIT, E_STATS, E_WRITE, E_PARAMS = (
    "0001", "0002", "0003", "0004", "0005", "0007", "0008", "0011")


@dataclass
class Sample:
    stem: str
    images: dict[str, Path]  # modality tag -> file
    label: Path


def resolve_source(dataset_url: str) -> Path:
    parsed = urlparse(dataset_url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and dataset_url[1:3] in (":\\", ":/")):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else dataset_url).expanduser()
        if path.is_dir():
            return path
        raise EngineError(E_SOURCE, f"dataset_url {dataset_url}: no such folder.",
                          "Point dataset_url at a folder holding the image and label GeoTIFFs.")
    raise EngineError(E_SOURCE, f"dataset_url {dataset_url}: only local folders can be onboarded so far.",
                      "Unpack the archive into a folder and give its path.")


def _by_stem(files: Iterable[Path], suffix: str, what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(files):
        if not path.is_file() or path.name.startswith("."):
            continue
        stem = path.name[: -len(suffix)]
        if stem in found:
            raise EngineError(E_FILES, f"Two {what} files share the stem '{stem}': {found[stem]} and {path}.",
                              "Stems must be unique across sub-folders; rename or remove one.")
        found[stem] = path
    return found


def _names(stems: Iterable[str], limit: int = 8) -> str:
    stems = sorted(stems)
    more = f" and {len(stems) - limit} more" if len(stems) > limit else ""
    return ", ".join(stems[:limit]) + more


def find_samples(root: Path, spec: OnboardSpec) -> list[Sample]:
    labels = _by_stem(root.rglob(f"*{spec.label_suffix}"), spec.label_suffix, "label")
    if not labels:
        raise EngineError(E_FILES, f"No file in {root} ends with the label suffix '{spec.label_suffix}'.",
                          "Check label_suffix against the label file names (it includes the extension, "
                          "e.g. '_LabelHand.tif').")
    images: dict[str, dict[str, Path]] = {}
    for source in spec.data_sources:
        files = [p for p in root.rglob(f"*{source.file_suffix}") if not p.name.endswith(spec.label_suffix)]
        images[source.modality_tag] = _by_stem(files, source.file_suffix, source.modality_tag)
        if not images[source.modality_tag]:
            raise EngineError(E_FILES, f"No file in {root} ends with the {source.modality_tag} suffix "
                              f"'{source.file_suffix}'.", "Check that data source's file_suffix.")
    problems = []
    for tag, by_stem in images.items():
        if missing := labels.keys() - by_stem.keys():
            problems.append(f"{len(missing)} label(s) without a {tag} image: {_names(missing)}")
        if orphans := by_stem.keys() - labels.keys():
            problems.append(f"{len(orphans)} {tag} image(s) without a label: {_names(orphans)}")
    if problems:
        raise EngineError(E_STEMS, "Images and labels do not pair up by stem: " + "; ".join(problems) + ".",
                          "Every label needs one image per data source with the same stem once the suffixes "
                          "are removed; add the missing files or remove the extra ones.")
    _check_unambiguous(labels)
    return [Sample(stem, {tag: images[tag][stem] for tag in images}, labels[stem]) for stem in sorted(labels)]


def _check_unambiguous(labels: dict[str, Path]) -> None:
    """TerraTorch matches split-file lines as substrings of file names; no stem may contain another."""
    stems = sorted(labels, key=len)
    for i, short in enumerate(stems):
        for longer in stems[i + 1:]:
            if short in longer:
                raise EngineError(E_STEMS, f"Stem '{short}' is part of stem '{longer}', so a split file could not "
                                  "tell them apart.", "Rename one of the files so that no stem contains another.")


def check_headers(samples: list[Sample], spec: OnboardSpec) -> dict[str, RasterInfo]:
    """Read every header once; fail on size, CRS or band-count problems. Returns path -> info."""
    infos: dict[str, RasterInfo] = {}
    need = {s.modality_tag: max(b.index for b in s.bands) + 1 for s in spec.data_sources}
    problems: list[str] = []
    for sample in samples:
        label = infos.setdefault(str(sample.label), raster_info(sample.label, E_FILES))
        for tag, path in sample.images.items():
            info = infos.setdefault(str(path), raster_info(path, E_FILES))
            if (info.width, info.height) != (label.width, label.height):
                problems.append(f"{path.name} is {info.width}x{info.height} but its label {sample.label.name} is "
                                f"{label.width}x{label.height}")
            elif info.crs != label.crs:
                problems.append(f"{path.name} is in {info.crs} but its label {sample.label.name} is in {label.crs}")
            if info.count < need[tag]:
                raise EngineError(E_STATS, f"{path} has {info.count} band(s) but the {tag} data source lists band "
                                  f"index {need[tag] - 1}.", "Fix the band indices (0-based) in that data source, "
                                  "or check that the file is the right product.")
    if problems:
        raise EngineError(E_DIMENSIONS, f"{len(problems)} image/label pair(s) do not line up: "
                          + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "") + ".",
                          "An image and its label must share size, CRS and grid; re-export them on one grid.")
    return infos
