"""Load a tune package and predict a GeoTIFF tile by tile, keeping its grid and CRS.

``stream_file`` is what ``infer`` runs (streamed, bounded memory, COG outputs; see streaming.py);
``predict_file`` is the earlier whole-window path through TerraTorch's ``tiled_inference``, kept as the
reference the tests and the benchmark compare the streamed predictor with."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from ..protocol import EngineError
from ..rasters import open_raster, read

PRED_NODATA = -9999


def read_deploy_config(tune_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The tune's ``config_deploy.yaml``: TerraTorch's own record of the model and of the data's preprocessing."""
    import yaml

    path = tune_dir / record["deploy_config"]
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        config = exc
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)
            and isinstance(config.get("data"), dict)):
        why = f"cannot be read: {config}" if isinstance(config, Exception) else "lacks its model or data section"
        raise EngineError("record_invalid", f"The deploy config of tune {record['tune_id']}, {path}, {why}.",
                          "The tune folder was changed by hand: restore the file, or fine-tune again.")
    return config


TILE_FIELDS = ("h_crop", "w_crop", "h_stride", "w_stride")


def check_tiling(tiles: dict[str, Any], where: Path, tune_id: str) -> None:
    """Refuse tiling a hand-edited tune would run with (stride 0 divides by zero; stride > crop skips pixels).

    Crops are whole numbers >= 1 (TerraTorch's default 224 where unset), strides whole numbers from 1 to
    their crop, delta a whole number >= 0 smaller than half the smaller crop.
    """
    def bad(field: str, rule: str) -> EngineError:
        return EngineError("tune_tiling_invalid", f"Tune {tune_id}: tiled_inference_parameters.{field} in {where} "
                           f"is {tiles.get(field)!r}; it must be {rule}.",
                           "The tune folder was changed by hand: put the value back "
                           "(model.init_args.tiled_inference_parameters), or fine-tune again.")

    if not isinstance(tiles, dict):
        tiles = {"(all)": tiles}
        raise bad("(all)", "a mapping of h_crop, w_crop, h_stride, w_stride")

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    crops = {}
    for axis in ("h", "w"):
        crop = tiles.get(f"{axis}_crop")
        if crop is not None and not (whole(crop) and 1 <= crop <= 100_000):
            raise bad(f"{axis}_crop", "a whole number from 1 to 100000")
        crops[axis] = crop or 224
        stride = tiles.get(f"{axis}_stride")
        if stride is not None and not (whole(stride) and 1 <= stride <= crops[axis]):
            raise bad(f"{axis}_stride", f"a whole number from 1 to the crop ({crops[axis]})")
    delta = tiles.get("delta")
    if delta is not None and not (whole(delta) and 0 <= 2 * delta < min(crops.values())):
        raise bad("delta", f"a whole number from 0 to below half the crop ({min(crops.values())})")


@dataclass(frozen=True)
class Preprocessing:
    """What TerraTorch's generic datamodule did to a training image, read from the deploy config's ``data``.

    Its dataset opens the file with nodata masked, fills the masked and NaN pixels with ``no_data_replace``
    (None: no filling), keeps ``output_bands`` (positions in ``dataset_bands``, the file's bands),
    multiplies by ``constant_scale``, and the datamodule normalises with ``means`` and ``stds``.
    """

    bands: list[int]  # 0-based band indices in the input file
    means: np.ndarray
    stds: np.ndarray
    constant_scale: float
    no_data_replace: Optional[float]
    tiles: dict[str, Any]  # the task's tiled_inference_parameters

    @classmethod
    def from_deploy_config(cls, config: dict[str, Any]) -> "Preprocessing":
        data = config["data"]["init_args"]
        dataset_bands, output_bands = data.get("dataset_bands"), data.get("output_bands")
        if dataset_bands and output_bands:
            bands = [dataset_bands.index(b) for b in output_bands]
        else:
            bands = list(range(len(data["means"])))
        replace = data.get("no_data_replace")
        return cls(bands=bands,
                   means=np.asarray(data["means"], dtype=np.float32)[:, None, None],
                   stds=np.asarray(data["stds"], dtype=np.float32)[:, None, None],
                   constant_scale=float(data.get("constant_scale", 1.0)),
                   no_data_replace=None if replace is None else float(replace),
                   tiles=dict(config["model"]["init_args"].get("tiled_inference_parameters") or {}))

    def apply(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Bands-first float32 pixels -> the model's input (invalid pixels filled as in training)."""
        data[:, ~valid] = np.nan if self.no_data_replace is None else self.no_data_replace
        return (data * self.constant_scale - self.means) / self.stds


def load_task(config: dict[str, Any], tune_dir: Path, record: dict[str, Any], device: str) -> Any:
    """Build the task from the deploy config and load the state-dict checkpoint (no datamodule, no trainer)."""
    import torch

    module_name, _, class_name = config["model"]["class_path"].rpartition(".")
    task_class = getattr(importlib.import_module(module_name), class_name)
    task = task_class(**config["model"]["init_args"])
    checkpoint = torch.load(tune_dir / record["checkpoint"], map_location="cpu", weights_only=False)
    state = checkpoint.get("state_dict", checkpoint)
    missing, unexpected = task.load_state_dict(state, strict=False)
    if [k for k in missing if k.startswith("model.")]:
        raise EngineError("checkpoint_mismatch", f"The checkpoint of tune {record['tune_id']} does not fit its "
                          f"config ({len(missing)} missing weights, e.g. {missing[0]}).",
                          "The tune folder was changed by hand; run the tune again.")
    return task.eval().to(device)


def window_for_bbox(src: rasterio.io.DatasetReader, bbox: Optional[list[float]], path: str) -> Optional[Window]:
    if not bbox:
        return None
    if src.crs is None:
        raise EngineError("no_crs", f"{path} has no CRS, so the bbox cannot be placed on it.",
                          "Assign the raster's CRS (QGIS: Raster > Projections > Assign Projection).")
    left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, *bbox, densify_pts=21)
    window = from_bounds(left, bottom, right, top, transform=src.transform)
    window = window.round_offsets(op="floor").round_lengths(op="ceil")
    full = Window(0, 0, src.width, src.height)
    try:
        window = window.intersection(full)
    except rasterio.errors.WindowError:
        window = None
    if window is None or window.width < 1 or window.height < 1:
        raise EngineError("bbox_outside", f"The bbox {bbox} does not overlap {path}.",
                          "Draw the extent over the raster, or leave the bbox empty to predict the whole file.")
    return window


def _expected_batches(shape: tuple[int, int], tiles: dict[str, Any], batch_size: int) -> int:
    """Roughly how many forward calls tiled inference makes; only used for progress."""
    rows = max(1, -(-(shape[0] - (tiles.get("h_crop") or 224)) // (tiles.get("h_stride") or 192)) + 1)
    cols = max(1, -(-(shape[1] - (tiles.get("w_crop") or 224)) // (tiles.get("w_stride") or 192)) + 1)
    return max(1, -(-rows * cols // batch_size))


def check_band_count(src: Any, bands: list[int], record: dict[str, Any], path: str) -> None:
    """The file must hold every band position the model reads (said before any pixel is read)."""
    if src.count < max(bands) + 1:
        names = record.get("data_spec", {}).get("band_names") or []
        raise EngineError("band_count", f"{path} has {src.count} band(s); tune {record['tune_id']} reads band "
                          f"indices {bands}" + (f" ({', '.join(names)})." if names else "."),
                          "Predict on imagery with the bands the model was trained on.")


def predict_file(task: Any, record: dict[str, Any], prep: Preprocessing, path: str, bbox: Optional[list[float]],
                 device: str, batch_size: int, on_batch: Callable[[float], None]
                 ) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Returns (prediction in user label ids, output profile, per-class pixel counts)."""
    import torch
    from terratorch.tasks.tiled_inference import tiled_inference

    bands = prep.bands
    with open_raster(Path(path)) as src:
        check_band_count(src, bands, record, path)
        window = window_for_bbox(src, bbox, path)
        data = read(src, Path(path), indexes=[b + 1 for b in bands], window=window, out_dtype="float32")
        nodata = src.nodata
        profile = src.profile.copy()
        profile["transform"] = src.window_transform(window) if window else src.transform
    valid = np.isfinite(data).all(axis=0)
    if nodata is not None and not np.isnan(nodata):
        valid &= (data != nodata).all(axis=0)
    data = prep.apply(data, valid)
    classes = record["classes"]
    tiles = prep.tiles
    batch = torch.from_numpy(data[None]).to(device)
    expected = _expected_batches(data.shape[1:], tiles, batch_size)
    done = [0]

    def forward(x: Any, **_: Any) -> Any:
        done[0] += 1
        on_batch(min(done[0] / expected, 1.0))
        return task.model(x).output

    with torch.no_grad():
        logits = tiled_inference(forward, batch, out_channels=len(classes), batch_size=batch_size,
                                 h_crop=tiles.get("h_crop"), w_crop=tiles.get("w_crop"),
                                 h_stride=tiles.get("h_stride"), w_stride=tiles.get("w_stride"),
                                 average_patches=tiles.get("average_patches", True), device=device)
    index = logits.argmax(dim=1)[0].cpu().numpy()
    ids = np.array([c["id"] for c in classes], dtype=np.int16)
    prediction = ids[index]
    prediction[~valid] = PRED_NODATA
    counts = np.bincount(index[valid].ravel(), minlength=len(classes))
    profile.update(count=1, dtype="int16", nodata=PRED_NODATA)
    return prediction, profile, counts


FULLY_CONVOLUTIONAL = ("timm_resnet", "timm_convnext", "timm_efficientnet", "timm_regnet", "timm_mobilenet")


def model_forward(task: Any) -> Callable[[Any], Any]:
    """The callable the streamed predictor runs on a batch (a tensor, or a dict per modality): logits."""
    def forward(batch: Any) -> Any:
        return task.model(batch).output

    return forward


def is_regression(record: dict[str, Any], config: dict[str, Any]) -> bool:
    return record.get("purpose") == "Regression" or "Regression" in str(config["model"].get("class_path", ""))


def stream_file(forward: Callable[[Any], Any], record: dict[str, Any], prep: Preprocessing, path: str,
                bbox: Optional[list[float]], device: str, batch_size: int, folder: Path, stem: str, *,
                regression: bool = False, confidence: bool = True, block_size: int = 512,
                tile: Optional[int] = None, on_progress: Callable[[float], None] = lambda f: None,
                optimise: Optional[Callable[[Any], Callable[[Any], Any]]] = None) -> dict[str, Any]:
    """Predict one GeoTIFF (or its bbox window) block by block into COGs in ``folder``; returns what the
    run record says about it (paths, size, class pixel counts, seconds)."""
    started = time.monotonic()
    bands = prep.bands
    with open_raster(Path(path)) as src:
        check_band_count(src, bands, record, path)
        window = window_for_bbox(src, bbox, path)
        profile = {"crs": src.crs, "transform": src.window_transform(window) if window else src.transform}
    # GDAL's block cache defaults to 5 % of RAM and would fill with the input's and outputs' blocks (each is
    # read or written once here): a small cache keeps memory bounded by the block (measured: 4096^2 x 2 grew
    # the peak by 267 MB with the default cache)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20):
        return _stream(forward, record, prep, path, window, profile, device, batch_size, folder, stem,
                       regression, confidence, block_size, tile, on_progress, started, optimise)


GDAL_CACHE_MB = 64


def _stream(forward: Callable[[Any], Any], record: dict[str, Any], prep: Preprocessing, path: str,
            window: Optional[Window], profile: dict[str, Any], device: str, batch_size: int, folder: Path, stem: str,
            regression: bool, confidence: bool, block_size: int, tile: Optional[int],
            on_progress: Callable[[float], None], started: float,
            optimise: Optional[Callable[[Any], Callable[[Any], Any]]]) -> dict[str, Any]:
    from .outputs import PredictionWriter
    from .streaming import RasterSource, predict_streamed, tiling_from_params

    source = RasterSource(path, prep.bands, prep, window)
    ids = None if regression else [int(c["id"]) for c in record["classes"]]
    writer = PredictionWriter(folder, stem, profile, source.width, source.height, ids, confidence)
    try:
        predict_streamed(source, forward, 1 if regression else len(ids), tiling_from_params(prep.tiles, tile),
                         writer.write, regression=regression, device=device, batch_size=batch_size,
                         block_rows=block_size, block_cols=max(block_size, 4096), on_progress=on_progress,
                         optimise=optimise)
        predicted = time.monotonic()
        writer.finish()
    finally:
        writer.close()
        source.close()
    out: dict[str, Any] = {"input": path, "prediction": str(writer.prediction), "width": source.width,
                           "height": source.height, "dtype": writer.dtype,
                           "nodata": None if regression else writer.nodata,
                           "timings": {"predict_s": round(predicted - started, 3),
                                       "cog_s": round(writer.cog_seconds, 3)}}
    if writer.confidence is not None:
        out["confidence"] = str(writer.confidence)
    if not regression:
        total = int(writer.counts.sum())
        out["class_pixels"] = {str(i): int(k) for i, k in zip(ids, writer.counts)}
        out["class_fraction"] = {str(i): (int(k) / total if total else 0.0) for i, k in zip(ids, writer.counts)}
    return out
