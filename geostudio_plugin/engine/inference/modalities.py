"""Inference on a multi-modal model (TerraMind on S2 + S1): one raster per modality, read into the dict input
TerraTorch's multi-modal models take (``{modality: tensor}``), each modality preprocessed as its datamodule
did in training.

- Matching: each input raster goes to the modality whose ``file_suffix`` its name ends with (the longest
  suffix wins); files with one stem (``Spain_7370579`` of ``Spain_7370579_S1Hand.tif``) form a scene, and
  every scene needs one raster per modality. Rasters that match no suffix are taken by order only when the
  inputs are exactly one scene (as many rasters as modalities). Anything else is refused (``modality_inputs``),
  naming the modalities and the suffixes expected.
- The rasters of a scene must share one grid (CRS, transform, size): ``modality_grid`` names both files.
- Bands: too few bands is refused (``band_count``); band names that differ from the model's are a warning
  here, because onboarding takes the user's names (the Studio's flood payload calls the file's ``B1``
  "Coastal_aerosol"), so the very raster a model was trained on may carry other names.
- Preprocessing per modality, as TerraTorch's ``GenericMultimodalDataset`` does it: nodata and NaN values
  become ``no_data_replace``, the model's bands are kept, multiplied by ``constant_scale``, then normalised.
  The values come from the deploy config; names and suffixes from the record's ``model_input_data_spec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from .. import protocol
from ..protocol import EngineError
from .input_spec import model_input_data_spec, spec_text


@dataclass(frozen=True)
class ModalityInput:
    """How one modality's raster becomes the model's input."""

    tag: str
    file_suffix: Optional[str]
    bands: list[int]  # 0-based bands of the raster the model reads
    band_names: list[str]  # their names ("" where unknown)
    means: np.ndarray  # (bands, 1, 1)
    stds: np.ndarray
    constant_scale: float
    no_data_replace: Optional[float]

    def apply(self, data: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """Bands-first float32 values -> normalised input; ``missing`` (same shape) values are filled first."""
        data[missing] = np.nan if self.no_data_replace is None else self.no_data_replace
        return (data * self.constant_scale - self.means) / self.stds


def modality_inputs(config: dict[str, Any], record: dict[str, Any]) -> list[ModalityInput]:
    """The model's modalities in its input order: preprocessing from the deploy config, band names and file
    suffixes from the record (the config's ``image_grep`` where the record has none)."""
    described = {e.get("modality_tag"): e for e in record.get("model_input_data_spec") or []}
    out = []
    for entry in model_input_data_spec(config["data"]["init_args"]):
        own = described.get(entry["modality_tag"]) or {}
        names = {b.get("index"): b.get("band_name") for b in own.get("bands") or []}
        out.append(ModalityInput(
            tag=str(entry["modality_tag"]), file_suffix=own.get("file_suffix") or entry["file_suffix"],
            bands=[b["index"] for b in entry["bands"]],
            band_names=[str(names.get(b["index"]) or b["band_name"] or "") for b in entry["bands"]],
            means=np.asarray(entry["norm_means"], dtype=np.float32)[:, None, None],
            stds=np.asarray(entry["norm_stds"], dtype=np.float32)[:, None, None],
            constant_scale=entry["constant_scale"], no_data_replace=entry["no_data_replace"]))
    return out


def _expected(modalities: list[ModalityInput]) -> str:
    return spec_text([{"modality_tag": m.tag, "file_suffix": m.file_suffix} for m in modalities])


def _refuse(record: dict[str, Any], modalities: list[ModalityInput], why: str) -> EngineError:
    example = next((m.file_suffix for m in modalities if m.file_suffix), None)
    return EngineError(
        "modality_inputs", f"Tune {record['tune_id']} reads {len(modalities)} modalities, one raster each: "
        f"{_expected(modalities)}. {why}",
        "Give one raster per modality in spatial_domain.urls, named <scene><suffix>"
        + (f" (such as scene{example})" if example else "") + f", or exactly {len(modalities)} rasters in the "
        f"model's order ({', '.join(m.tag for m in modalities)}).")


def _suffix_of(path: str, modalities: list[ModalityInput]) -> Optional[ModalityInput]:
    name = Path(path).name
    hits = [m for m in modalities if m.file_suffix and name.endswith(m.file_suffix) and len(name) > len(m.file_suffix)]
    return max(hits, key=lambda m: len(m.file_suffix or "")) if hits else None


def match_scenes(paths: list[str], modalities: list[ModalityInput], record: dict[str, Any]
                 ) -> list[tuple[str, dict[str, str]]]:
    """(scene name, {modality tag: raster}) per scene, the tags in the model's order."""
    found = {p: _suffix_of(p, modalities) for p in paths}
    if all(found.values()):
        scenes: dict[str, dict[str, str]] = {}
        for path, modality in found.items():
            assert modality is not None and modality.file_suffix
            scene = scenes.setdefault(Path(path).name[: -len(modality.file_suffix)], {})
            if modality.tag in scene:
                raise _refuse(record, modalities, f"{scene[modality.tag]} and {path} are both {modality.tag} "
                              "rasters of one scene.")
            scene[modality.tag] = path
        for name, scene in scenes.items():
            missing = [m for m in modalities if m.tag not in scene]
            if missing:
                given = ", ".join(f"{scene[m.tag]} ({m.tag})" for m in modalities if m.tag in scene)
                lacking = ", ".join(f"{m.tag} (a file ending {m.file_suffix or '?'})" for m in missing)
                raise _refuse(record, modalities, f"For scene {name} spatial_domain.urls gives {given} and no "
                              f"raster for {lacking}.")
        return [(name, {m.tag: scene[m.tag] for m in modalities}) for name, scene in scenes.items()]
    matched = [m.tag for m in found.values() if m is not None]
    if len(paths) == len(modalities) and len(set(matched)) == len(matched):
        rest = iter([m for m in modalities if m.tag not in matched])
        scene = {}
        for path, modality in found.items():
            if modality is None:
                modality = next(rest)
                protocol.log(f"{path} matches no modality's file suffix: taken as {modality.tag} by its place "
                             "in spatial_domain.urls", "warning")
            scene[modality.tag] = path
        return [(Path(paths[0]).stem, {m.tag: scene[m.tag] for m in modalities})]
    unmatched = ", ".join(p for p, m in found.items() if m is None)
    raise _refuse(record, modalities, f"spatial_domain.urls gives {len(paths)} raster(s) and {unmatched} "
                  f"match{'es' if len(found) - len(matched) == 1 else ''} none of these suffixes.")


def check_scene(scene: dict[str, str], modalities: list[ModalityInput], record: dict[str, Any]) -> list[str]:
    """Bands and grids of one scene's rasters, from their headers (before the model loads); returns warnings."""
    from ..rasters import open_raster
    from .bands import check_bands

    warnings: list[str] = []
    grids = []
    for modality in modalities:
        path = scene[modality.tag]
        with open_raster(Path(path)) as src:
            descriptions = list(src.descriptions)
            grids.append((path, src.crs, src.transform, src.height, src.width))
        names = modality.band_names if all(modality.band_names) else []
        check = check_bands(f"{path} ({modality.tag})", descriptions, names, modality.bands,
                            f"tune {record['tune_id']}")
        if check.code == "band_count":
            raise EngineError("band_count", check.message, check.hint)
        if check.refused:  # names differ: onboarding kept the user's names, not necessarily the file's
            warnings.append(check.message + " The bands are read by position.")
        warnings += check.warnings
    first = grids[0]
    for other in grids[1:]:
        same = (first[1] == other[1] and first[3:] == other[3:]
                and first[2].almost_equals(other[2], precision=1e-9))
        if not same:
            def grid(g: tuple) -> str:
                return f"{g[0]}: {g[4]} x {g[3]} px, CRS {g[1]}, transform {tuple(round(v, 9) for v in g[2][:6])}"

            raise EngineError("modality_grid", f"The rasters of one scene must share a grid for tune "
                              f"{record['tune_id']}, and these do not: {grid(first)}; {grid(other)}.",
                              "Resample them onto one grid (QGIS: Raster > Projections > Warp, or Processing's "
                              "Align rasters), as onboarding does for a multi-modal dataset.")
    return warnings


def predict_scene(task: Any, record: dict[str, Any], modalities: list[ModalityInput], scene: dict[str, str],
                  bbox: Optional[list[float]], device: str, batch_size: int, on_batch: Callable[[float], None],
                  tiles: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Returns (prediction in user label ids, output profile of the first modality's grid, per-class counts);
    ``tiles``: the deploy config's tiled_inference_parameters."""
    import torch
    from terratorch.tasks.tiled_inference import tiled_inference

    from .predict import PRED_NODATA

    batch, valid, profile = read_scene(modalities, scene, bbox)
    batch = {tag: torch.from_numpy(data[None]).to(device) for tag, data in batch.items()}
    height, width = valid.shape
    crop_h, crop_w = tiles.get("h_crop") or 224, tiles.get("w_crop") or 224
    rows = max(1, -(-(height - crop_h) // (tiles.get("h_stride") or crop_h)) + 1)
    cols = max(1, -(-(width - crop_w) // (tiles.get("w_stride") or crop_w)) + 1)
    expected, done = max(1, -(-rows * cols // batch_size)), [0]

    def forward(x: Any, **_: Any) -> Any:
        done[0] += 1
        on_batch(min(done[0] / expected, 1.0))
        return task.model(x).output

    with torch.no_grad():
        logits = tiled_inference(forward, batch, batch_size=batch_size, h_crop=tiles.get("h_crop"),
                                 w_crop=tiles.get("w_crop"), h_stride=tiles.get("h_stride"),
                                 w_stride=tiles.get("w_stride"), average_patches=tiles.get("average_patches", True),
                                 device=device)
    classes = record["classes"]
    index = logits.argmax(dim=1)[0].cpu().numpy()
    prediction = np.array([c["id"] for c in classes], dtype=np.int16)[index]
    prediction[~valid] = PRED_NODATA
    counts = np.bincount(index[valid].ravel(), minlength=len(classes))
    profile.update(count=1, dtype="int16", nodata=PRED_NODATA)
    return prediction, profile, counts


def read_scene(modalities: list[ModalityInput], scene: dict[str, str], bbox: Optional[list[float]]
               ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Any]]:
    """({tag: normalised (bands, h, w) float32}, pixels valid in every band of every modality, the first
    modality's profile for the window read)."""
    from ..rasters import open_raster, read
    from .predict import window_for_bbox

    batch, valid, profile = {}, None, None
    for modality in modalities:
        path = scene[modality.tag]
        with open_raster(Path(path)) as src:
            window = window_for_bbox(src, bbox, path)
            data = read(src, Path(path), indexes=[b + 1 for b in modality.bands], window=window,
                        out_dtype="float32")
            nodata = src.nodata
            if profile is None:
                profile = src.profile.copy()
                profile["transform"] = src.window_transform(window) if window else src.transform
        missing = ~np.isfinite(data)
        if nodata is not None and not np.isnan(nodata):
            missing |= data == nodata
        ok = ~missing.any(axis=0)
        valid = ok if valid is None else valid & ok
        batch[modality.tag] = modality.apply(data, missing)
    assert valid is not None and profile is not None
    return batch, valid, profile
