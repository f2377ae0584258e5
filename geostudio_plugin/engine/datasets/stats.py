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

    def merge(self, other: "BandStats") -> None:
        """Add another accumulator's pixels (re-centred on this one's shift): partial statistics of samples
        computed in worker threads are merged in a fixed order, so the result does not depend on timing."""
        if other.shift is None:
            return
        if self.shift is None:
            self.count, self.total, self.total_sq = other.count.copy(), other.total.copy(), other.total_sq.copy()
            self.shift = other.shift.copy()
            return
        delta = other.shift - self.shift  # x - s = (x - s') + delta
        self.total_sq += other.total_sq + 2 * delta * other.total + other.count * delta * delta
        self.total += other.total + other.count * delta
        self.count += other.count

    def means(self) -> list[float]:
        shift = self.shift if self.shift is not None else 0.0
        return (self.total / np.maximum(self.count, 1) + shift).tolist()

    def stds(self) -> list[float]:
        n = np.maximum(self.count, 1)
        var = np.maximum(self.total_sq / n - (self.total / n) ** 2, 0.0)
        return np.sqrt(var).tolist()

    def empty_bands(self) -> list[int]:
        return [i for i, c in enumerate(self.count) if c == 0]

    def constant_bands(self) -> list[int]:
        """Bands whose valid pixels all hold one value (std 0: normalising by it divides by zero)."""
        n = np.maximum(self.count, 1)
        var = self.total_sq / n - (self.total / n) ** 2
        scale = np.maximum(np.abs(np.asarray(self.means())), 1.0)
        return [i for i, c in enumerate(self.count)
                if c > 0 and (self.total_sq[i] == 0 or var[i] <= (1e-12 * scale[i]) ** 2)]
