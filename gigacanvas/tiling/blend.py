"""Deterministic weighted blending of tile predictions.

Predictions arrive in whatever order the actors finish; accumulating them in that order would make
the float sums, and so the pixels, depend on timing. `TileBlender` buffers early arrivals and folds
them in tile order only, in float64, so the blend is a pure function of the tile values.

A blender may own only rows [y0, y1) of the canvas (a band reducer's): it then takes each tile's
rows inside the band and folds the tiles that reach it. Every operation is per pixel (the weighted
sum in tile order, the weight sum, the division), so a band's blend equals the same rows of the
whole canvas's blend bit for bit.
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

    def __init__(
        self, grid: TileGrid, channels: int, scale: int = 1, sigma: float | None = None,
        rows: tuple[int, int] | None = None,
    ):
        # `scale` maps the latent grid onto a canvas `scale` times larger (the VAE's pixel space);
        # `rows` = (y0, y1), in latent rows, keeps only that band of it.
        self.grid = grid
        self.scale = scale
        y0, y1 = rows if rows is not None else (0, grid.height)
        self.rows = (y0 * scale, y1 * scale)
        kwargs = {} if sigma is None else {"sigma": sigma}
        self.weights = gaussian_weights(grid.tile_h * scale, grid.tile_w * scale, **kwargs)
        # per tile reaching the band: (canvas rows, canvas columns, weight rows), in canvas units
        self._place: dict[int, tuple[slice, slice, np.ndarray]] = {}
        for index, w in enumerate(grid.windows):
            a, b = max(w.y, y0), min(w.y + w.h, y1)
            if a < b:
                ys = slice((a - y0) * scale, (b - y0) * scale)
                xs = slice(w.x * scale, (w.x + w.w) * scale)
                self._place[index] = (ys, xs, self.weights[(a - w.y) * scale : (b - w.y) * scale])
        self.tiles = tuple(sorted(self._place))  # the tiles this blender folds, in tile order
        shape = ((y1 - y0) * scale, grid.width * scale)
        weight_sum = np.zeros(shape, dtype=np.float64)
        for index in self.tiles:
            ys, xs, weights = self._place[index]
            weight_sum[ys, xs] += weights
        self._inv_weight_sum = 1.0 / weight_sum
        self._acc = np.zeros((channels, *shape), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Start a new blend on the same grid (the weight sum is kept)."""
        self._acc[...] = 0
        self._pending: dict[int, np.ndarray] = {}
        self._next = 0

    def add(self, index: int, pred: np.ndarray) -> None:
        """Hand in tile `index`'s prediction, (C, h, w) or just its rows in the band; folded in tile order."""
        if index not in self._place or index in self._pending or self.tiles.index(index) < self._next:
            raise ValueError(f"tile {index} does not reach this blender's rows or was already added")
        self._pending[index] = pred
        while self._next < len(self.tiles) and self.tiles[self._next] in self._pending:
            index = self.tiles[self._next]
            ys, xs, weights = self._place[index]
            pred = self._pending.pop(index)
            if pred.shape[-2] != ys.stop - ys.start:  # a whole tile: keep the band's rows
                y = self.grid.windows[index].y * self.scale
                pred = pred[..., ys.start + self.rows[0] - y : ys.stop + self.rows[0] - y, :]
            # float64 and tile order: the sum is the same whichever actor finished first
            self._acc[:, ys, xs] += weights * pred
            self._next += 1

    @property
    def complete(self) -> bool:
        return self._next == len(self.tiles)

    def result(self) -> np.ndarray:
        """The normalised blend as float32 (C, rows, W); every tile reaching it must have been added."""
        if not self.complete:
            raise ValueError(f"blend incomplete: {self._next} of {len(self.tiles)} tiles added")
        return (self._acc * self._inv_weight_sum).astype(np.float32)
