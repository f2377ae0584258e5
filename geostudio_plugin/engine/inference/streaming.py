"""Streamed tiled inference: memory bounded by a band of tile rows, not by the raster.

The tile grid is TerraTorch's ``tiled_inference`` grid, laid over the whole window once: the window is
reflect-padded by ``delta`` on every side (padding ``"reflect"``, TerraTorch's default), tiles of
``tile`` pixels start every ``stride`` pixels in the padded frame plus one last tile flush with the far edge,
each tile's output is cropped by ``delta`` and blended with TerraTorch's cosine window (``get_blend_mask``).
With the deploy config's crop and stride this is the same arithmetic as TerraTorch's, so predictions agree
to float rounding; because the grid is global, where a block boundary falls never changes a pixel.

Processing goes column band by column band (``block_cols`` wide, tiles straddling two bands are computed
in both), and within a band tile row by tile row, top to bottom: a rolling accumulator of ``block_rows`` +
two tiles of rows holds blended logits, and as soon as ``block_rows`` output rows can receive no further tile
they are finished (softmax, argmax, label ids, nodata) and handed to ``emit``. Each tile is computed once
within its band. A reader thread reads and preprocesses the next tile row while the model runs.

The model is any callable from a batch (a tensor, or a dict of tensors per modality when the source yields
dicts) to logits ``(N, K, h, w)`` (``(N, h, w)`` is read as one channel): multi-modal models plug in here.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

import numpy as np

# Tiles per forward call at most on a CPU. Measured on 2 shared cores, the frozen tiny ResNet-18 UNet on a 3000^2
# raster (noisy): 4 tiles a call 6.5-6.8 s, peak 1530 MB; 8 tiles 6.2 s (and some runs far slower under load),
# 1605-1659 MB; 16 tiles 7.4-7.8 s, 1738-1775 MB. A 224 px tile holds ~30 MB of activations. Measured again with
# the frozen model alone (torch only, 6 bands, load ~4, two runs each, seconds per 4 tiles): 4 tiles a call
# 0.72 / 0.59, 8 tiles 0.57 / 0.56, 16 tiles 0.56 / 0.53; peak 636, 685-753 and 815-894 MB: 8 it is.
# (Bigger tiles were faster still, 448 px about twice per pixel, but changed 1.2 % of a 5000^2 prediction
# against TerraTorch's 224 px grid: above the 0.5 % allowed, so the config's grid stays.)
CPU_BATCH = 8
Pixels = Union[np.ndarray, dict[str, np.ndarray]]  # (C, h, w), or one such array per modality


class WindowSource(Protocol):
    """Preprocessed pixels of a window of the input (bands-first float32) and its valid-pixel mask."""

    height: int
    width: int

    def read(self, row0: int, row1: int, col0: int, col1: int) -> tuple[Pixels, np.ndarray]:
        """Rows [row0, row1) and columns [col0, col1), all inside the window."""
        ...


@dataclass(frozen=True)
class Grid:
    """Tiles along one axis: starts in window coordinates (the first is -delta: it reads reflected pixels)."""

    tile: int
    delta: int
    starts: tuple[int, ...]
    weight: np.ndarray  # (tile - 2 delta,) blend weights of a tile's kept part

    @classmethod
    def build(cls, length: int, tile: int, stride: int, delta: int) -> "Grid":
        if length <= tile:  # TerraTorch runs a window that fits one tile as a whole, unpadded
            return cls(length, 0, (0,), np.ones(length, dtype=np.float32))
        padded = length + 2 * delta
        starts = list(range(0, padded - tile - 1, stride)) + [padded - tile]
        overlap = min(tile // 2, tile - stride) - delta
        weight = np.ones(tile - 2 * delta, dtype=np.float32)
        if overlap > 0:  # TerraTorch's get_blend_mask: a raised-cosine ramp at both ends
            ramp = (np.cos(math.pi * (np.arange(overlap) + 1) / (overlap + 1)) / 2 + 0.5).astype(np.float32)
            weight[:overlap] = ramp[::-1]
            weight[-overlap:] = ramp
        return cls(tile, delta, tuple(s - delta for s in starts), weight)

    def kept(self, i: int) -> tuple[int, int]:
        """Window rows (or columns) tile i writes: its span less delta at each end."""
        return self.starts[i] + self.delta, self.starts[i] + self.tile - self.delta

    def touching(self, lo: int, hi: int) -> list[int]:
        return [i for i in range(len(self.starts)) if self.kept(i)[0] < hi and self.kept(i)[1] > lo]


def tiling_from_params(tiles: dict[str, Any], tile: Optional[int] = None) -> tuple[int, int, int, int, int]:
    """(tile_h, tile_w, stride_h, stride_w, delta) from the deploy config's tiled_inference_parameters, with
    TerraTorch's defaults (crop 224, stride 192, delta 8 cut down to half the overlap). ``tile`` overrides the
    crop (for fully convolutional models) and keeps the overlap the config gives."""
    h, w = tiles.get("h_crop") or 224, tiles.get("w_crop") or 224
    sh, sw = tiles.get("h_stride") or 192, tiles.get("w_stride") or 192
    if tile:
        sh, sw, h, w = tile - (h - sh), tile - (w - sw), tile, tile
    delta = tiles.get("delta", 8)
    delta = min(delta, (h - sh) // 2, (w - sw) // 2)
    return h, w, sh, sw, delta


@dataclass
class Block:
    """Finished output rows [row0, row0 + rows) and columns [col0, col0 + cols) of the window."""

    row0: int
    col0: int
    classes: Optional[np.ndarray]  # class index per pixel (segmentation), -1 where the input is invalid
    confidence: Optional[np.ndarray]  # top-class softmax probability, NaN where invalid
    values: Optional[np.ndarray]  # regression: the model's value, NaN where invalid


def _apply(data: Pixels, fn: Callable[[np.ndarray], np.ndarray]) -> Pixels:
    return {k: fn(v) for k, v in data.items()} if isinstance(data, dict) else fn(data)


def _stack(tiles: list[Pixels]) -> Any:
    import torch

    if isinstance(tiles[0], dict):
        return {k: torch.from_numpy(np.stack([t[k] for t in tiles])) for k in tiles[0]}
    return torch.from_numpy(np.stack(tiles))


def _to(batch: Any, device: str) -> Any:
    return {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)


def reflect_read(source: WindowSource, row0: int, row1: int, col0: int, col1: int) -> tuple[Pixels, np.ndarray]:
    """Rows/columns that may reach past the window: read the inside, mirror the rest (numpy/torch 'reflect')."""
    r0, r1 = max(row0, 0), min(row1, source.height)
    c0, c1 = max(col0, 0), min(col1, source.width)
    data, valid = source.read(r0, r1, c0, c1)
    pad = ((r0 - row0, row1 - r1), (c0 - col0, col1 - c1))
    if any(p for axis in pad for p in axis):
        data = _apply(data, lambda a: np.pad(a, ((0, 0),) * (a.ndim - 2) + pad, mode="reflect"))
    return data, valid


def predict_streamed(source: WindowSource, forward: Callable[[Any], Any], n_out: int,
                     tiling: tuple[int, int, int, int, int], emit: Callable[[Block], None], *,
                     regression: bool = False, device: str = "cpu", batch_size: int = 16,
                     block_rows: int = 512, block_cols: int = 4096,
                     on_progress: Callable[[float], None] = lambda f: None, prefetch: bool = True,
                     optimise: Optional[Callable[[Any], Callable[[Any], Any]]] = None, optimise_min_tiles: int = 64
                     ) -> None:
    """Predict the whole window; ``emit`` receives each finished block (top to bottom within a column band,
    bands left to right). ``n_out``: classes (segmentation) or output channels (regression, 1).
    ``optimise``: given the first batch, returns a faster forward (or the same one); called once, only when the
    window has at least ``optimise_min_tiles`` tiles (it costs seconds) and every tile has one size."""
    import torch

    tile_h, tile_w, stride_h, stride_w, delta = tiling
    if str(device) == "cpu":
        batch_size = min(batch_size, CPU_BATCH)
    rows = Grid.build(source.height, tile_h, stride_h, delta)
    bands = [(c, min(c + block_cols, source.width)) for c in range(0, source.width, block_cols)]
    band_grids = []
    for c0, c1 in bands:
        cols = Grid.build(source.width, tile_w, stride_w, delta)
        band_grids.append((c0, c1, cols, cols.touching(c0, c1)))
    total = sum(len(rows.starts) * len(ix) for *_, ix in band_grids)
    done_tiles = 0
    pending_optimise = optimise if total >= optimise_min_tiles else None
    reader = ThreadPoolExecutor(1, thread_name_prefix="geostudio-read") if prefetch else None

    def read_row(i: int, lo: int, hi: int) -> tuple[Pixels, np.ndarray]:
        return reflect_read(source, rows.starts[i], rows.starts[i] + rows.tile, lo, hi)

    try:
        for c0, c1, cols, xs in band_grids:
            lo, hi = cols.starts[xs[0]], cols.starts[xs[-1]] + cols.tile  # input columns the band's tiles read
            width = c1 - c0
            # rows a tile may write below the last finished one: the batch can reach several tile rows ahead
            stride = max(rows.starts[1] - rows.starts[0], 1) if len(rows.starts) > 1 else rows.tile
            capacity = block_rows + rows.tile + stride * (1 + -(-batch_size // len(xs)))
            acc = np.zeros((n_out, capacity, width), dtype=np.float32)
            wsum = np.zeros((capacity, width), dtype=np.float32)
            valid_buf = np.zeros((capacity, width), dtype=bool)
            origin = 0  # window row of acc[:, 0]
            pending: list[tuple[int, int, Pixels]] = []  # (tile row, tile column, pixels)
            left = {i: len(xs) for i in range(len(rows.starts))}  # tiles of each row not yet through the model
            finished_rows = 0  # window rows no further tile writes to (all rows above the next unfinished row)
            next_row = 0  # lowest tile row with tiles left

            def submit(i: int) -> Optional[Future]:
                if i >= len(rows.starts):
                    return None
                return reader.submit(read_row, i, lo, hi) if reader else None

            future = submit(0)

            def flush(final: bool) -> None:
                nonlocal origin, finished_rows, next_row
                while next_row < len(rows.starts) and left[next_row] == 0:
                    next_row += 1
                finished_rows = source.height if next_row == len(rows.starts) else rows.kept(next_row)[0]
                finished_rows = max(0, min(finished_rows, source.height))
                while finished_rows - origin >= block_rows or (final and finished_rows > origin):
                    n = min(block_rows, finished_rows - origin)
                    emit(_finish(acc[:, :n], wsum[:n], valid_buf[:n], origin, c0, regression))
                    acc[:, :-n], wsum[:-n], valid_buf[:-n] = acc[:, n:], wsum[n:], valid_buf[n:]
                    acc[:, -n:], wsum[-n:], valid_buf[-n:] = 0, 0, False
                    origin += n

            def run_batch() -> None:
                nonlocal done_tiles, forward, pending_optimise
                batch = _to(_stack([p for *_, p in pending]), device)
                if pending_optimise is not None:
                    forward, pending_optimise = pending_optimise(batch), None
                with torch.inference_mode():
                    out = forward(batch)
                out = out.float().cpu().numpy()
                if out.ndim == 3:
                    out = out[:, None]
                for (i, j, _), logits in zip(pending, out):
                    (y0, y1), (x0, x1) = rows.kept(i), cols.kept(j)
                    kept = logits[:, rows.delta: rows.tile - rows.delta, cols.delta: cols.tile - cols.delta]
                    weight = rows.weight[:, None] * cols.weight[None, :] + 1e-6  # TerraTorch's epsilon
                    # clip the tile's kept part to the window and to this band
                    ya, yb = max(y0, 0), min(y1, source.height)
                    xa, xb = max(x0, c0), min(x1, c1)
                    sub = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
                    dst = (slice(ya - origin, yb - origin), slice(xa - c0, xb - c0))
                    acc[(slice(None),) + dst] += kept[(slice(None),) + sub] * weight[sub]
                    wsum[dst] += weight[sub]
                    left[i] -= 1
                done_tiles += len(pending)
                pending.clear()
                on_progress(done_tiles / total)

            for i in range(len(rows.starts)):
                data, valid = future.result() if future is not None else read_row(i, lo, hi)
                future = submit(i + 1)
                y0 = rows.starts[i]
                ya, yb = max(rows.kept(i)[0], 0), min(rows.kept(i)[1], source.height)
                valid_buf[ya - origin: yb - origin] = valid[ya - max(y0, 0): yb - max(y0, 0), c0 - max(lo, 0): c1 - max(lo, 0)]
                for j in xs:
                    x = cols.starts[j] - lo
                    pending.append((i, j, _apply(data, lambda a: a[..., :, x: x + cols.tile])))
                    if len(pending) == batch_size:
                        run_batch()
                        flush(False)
            if pending:
                run_batch()
            flush(True)
    finally:
        if reader is not None:  # wait for a read in flight (one tile row): the caller closes the file next
            reader.shutdown(wait=True, cancel_futures=True)


def _finish(acc: np.ndarray, wsum: np.ndarray, valid: np.ndarray, row0: int, col0: int,
            regression: bool) -> Block:
    logits = acc / wsum[None]
    if regression:
        values = logits[0].copy()
        values[~valid] = np.nan
        return Block(row0, col0, None, None, values)
    index = logits.argmax(axis=0).astype(np.int16)
    top = np.take_along_axis(logits, index[None].astype(np.intp), axis=0)[0]
    confidence = 1.0 / np.exp(logits - top[None]).sum(axis=0)  # softmax of the top class, overflow-free
    index[~valid] = -1
    confidence[~valid] = np.nan
    return Block(row0, col0, index, confidence.astype(np.float32), None)


class RasterSource:
    """A window of a GeoTIFF, read window by window and preprocessed as training did (``Preprocessing``):
    bands picked, invalid pixels (nodata, NaN, infinity) filled with ``no_data_replace``, scaled, normalised."""

    def __init__(self, path: str, bands: list[int], prep: Any, window: Any = None) -> None:
        import rasterio
        from rasterio.windows import Window

        self.path, self.bands, self.prep = path, bands, prep
        self._src = rasterio.open(path)
        self.window = window or Window(0, 0, self._src.width, self._src.height)
        self.height, self.width = int(self.window.height), int(self.window.width)
        self.nodata = self._src.nodata

    def read(self, row0: int, row1: int, col0: int, col1: int) -> tuple[np.ndarray, np.ndarray]:
        from pathlib import Path

        from rasterio.windows import Window

        from ..rasters import read

        window = Window(self.window.col_off + col0, self.window.row_off + row0, col1 - col0, row1 - row0)
        data = read(self._src, Path(self.path), indexes=[b + 1 for b in self.bands], window=window,
                    out_dtype="float32")
        valid = np.isfinite(data).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata):
            valid &= (data != self.nodata).all(axis=0)
        return self.prep.apply(data, valid).astype(np.float32, copy=False), valid

    def close(self) -> None:
        self._src.close()
