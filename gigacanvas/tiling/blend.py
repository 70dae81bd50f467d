"""Deterministic weighted blending of tile predictions.

Predictions arrive in whatever order the actors finish; accumulating them in that order would make
the float sums, and so the pixels, depend on timing. `TileBlender` buffers early arrivals and folds
them in tile order only, in float64, so the blend is a pure function of the tile values.
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.grid import TileGrid
from gigacanvas.tiling.weights import gaussian_weights


class TileBlender:
    """Accumulates `w * pred` per tile in grid order into a (C, H, W) canvas, then normalises.

    The weight sum depends only on the grid, so it is computed once at construction; it is strictly
    positive everywhere because the grid covers every pixel and the weights are positive.
    """

    def __init__(self, grid: TileGrid, channels: int, scale: int = 1, sigma: float | None = None):
        # `scale` maps the latent grid onto a canvas `scale` times larger (the VAE's pixel space).
        self.grid = grid
        self.scale = scale
        self.windows = [
            (slice(w.y * scale, (w.y + w.h) * scale), slice(w.x * scale, (w.x + w.w) * scale))
            for w in grid.windows
        ]
        kwargs = {} if sigma is None else {"sigma": sigma}
        self.weights = gaussian_weights(grid.tile_h * scale, grid.tile_w * scale, **kwargs)
        shape = (grid.height * scale, grid.width * scale)
        weight_sum = np.zeros(shape, dtype=np.float64)
        for ys, xs in self.windows:
            weight_sum[ys, xs] += self.weights
        self._inv_weight_sum = 1.0 / weight_sum
        self._acc = np.zeros((channels, *shape), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Start a new blend on the same grid (the weight sum is kept)."""
        self._acc[...] = 0
        self._pending: dict[int, np.ndarray] = {}
        self._next = 0

    def add(self, index: int, pred: np.ndarray) -> None:
        """Hand in tile `index`'s (C, h, w) prediction; it is folded in once all before it are."""
        if not 0 <= index < len(self.windows) or index < self._next or index in self._pending:
            raise ValueError(f"tile {index} is out of range or was already added")
        self._pending[index] = pred
        while self._next in self._pending:
            ys, xs = self.windows[self._next]
            self._acc[:, ys, xs] += self.weights * self._pending.pop(self._next)
            self._next += 1

    @property
    def complete(self) -> bool:
        return self._next == len(self.windows)

    def result(self) -> np.ndarray:
        """The normalised blend as float32 (C, H, W); every tile must have been added."""
        if not self.complete:
            raise ValueError(f"blend incomplete: {self._next} of {len(self.windows)} tiles added")
        return (self._acc * self._inv_weight_sum).astype(np.float32)
