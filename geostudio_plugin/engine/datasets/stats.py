"""Per-band mean and standard deviation, accumulated chunk by chunk (memory does not grow with the dataset)."""

from __future__ import annotations

from typing import Optional

import numpy as np

# The Studio treats values at or below -9999 as missing when computing statistics.
MISSING_BELOW = -9999


class BandStats:
    def __init__(self, n_bands: int) -> None:
        self.count = np.zeros(n_bands, dtype=np.float64)
        self.total = np.zeros(n_bands, dtype=np.float64)
        self.total_sq = np.zeros(n_bands, dtype=np.float64)
        # shift keeps the sum of squares precise for data far from zero (e.g. dB or DN)
        self.shift: Optional[np.ndarray] = None

    def add(self, block: np.ndarray, nodata: Optional[float] = None) -> None:
        """block: (bands, rows, cols) of raw pixel values."""
        data = block.reshape(block.shape[0], -1).astype(np.float64)
        valid = np.isfinite(data) & (data > MISSING_BELOW)
        if nodata is not None and not np.isnan(nodata):
            valid &= data != nodata
        if self.shift is None:
            self.shift = np.array([row[mask][0] if mask.any() else 0.0 for row, mask in zip(data, valid)])
        centred = np.where(valid, data - self.shift[:, None], 0.0)
        self.count += valid.sum(axis=1)
        self.total += centred.sum(axis=1)
        self.total_sq += (centred * centred).sum(axis=1)

    def means(self) -> list[float]:
        shift = self.shift if self.shift is not None else 0.0
        return (self.total / np.maximum(self.count, 1) + shift).tolist()

    def stds(self) -> list[float]:
        n = np.maximum(self.count, 1)
        var = np.maximum(self.total_sq / n - (self.total / n) ** 2, 0.0)
        return np.sqrt(var).tolist()

    def empty_bands(self) -> list[int]:
        return [i for i, c in enumerate(self.count) if c == 0]
