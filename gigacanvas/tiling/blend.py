"""Deterministic weighted blending of tile predictions.

Predictions arrive in whatever order the actors finish; accumulating them in that order would make
the float sums, and so the pixels, depend on timing. `TileBlender` buffers early arrivals and folds
them in tile order only, in float64, so the blend is a pure function of the tile values.

A blender may own only rows [y0, y1) of the canvas (a band reducer's): it then takes each tile's
rows inside the band and folds the tiles that reach it. Every operation is per pixel (the weighted
sum in tile order, the weight sum, the division), so a band's blend equals the same rows of the
whole canvas's blend bit for bit. On a torus (a grid with `wrap_y`/`wrap_x`) a tile crossing the
joined edges is folded as up to four pieces, each where its pixels land modulo the canvas.
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.bands import tile_rows_in_band
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
        # per tile reaching the band, its pieces: (canvas rows, canvas columns, weights, rows of the
        # tile, rows of the band's cut of it, columns of the tile), all in canvas units. One piece for a tile inside the
        # canvas; up to four for one crossing a torus's joined edge (tiling/grid.py).
        self._place: dict[int, list[tuple[slice, slice, np.ndarray, slice, slice, slice]]] = {}
        self._cut_rows: dict[int, int] = {}  # per tile, the rows of its band cut, in canvas units
        height = grid.height if grid.wrap_y else None
        for index, w in enumerate(grid.windows):
            cut = tile_rows_in_band(w, y0, y1, height)
            if cut is None:
                continue
            pieces, at = [], 0
            for a, b in cut:
                y = (w.y + a) % grid.height if grid.wrap_y else w.y + a
                for x, c, d in _columns(w.x, w.w, grid.width if grid.wrap_x else None):
                    pieces.append((
                        slice((y - y0) * scale, (y + b - a - y0) * scale),
                        slice(x * scale, (x + d - c) * scale),
                        self.weights[a * scale : b * scale, c * scale : d * scale],
                        slice(a * scale, b * scale),
                        slice(at * scale, (at + b - a) * scale),
                        slice(c * scale, d * scale),
                    ))
                at += b - a
            self._place[index] = pieces
            self._cut_rows[index] = at * scale
        self.tiles = tuple(sorted(self._place))  # the tiles this blender folds, in tile order
        shape = ((y1 - y0) * scale, grid.width * scale)
        weight_sum = np.zeros(shape, dtype=np.float64)
        for index in self.tiles:
            for ys, xs, weights, *_ in self._place[index]:
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
            pred = self._pending.pop(index)
            whole = pred.shape[-2] != self._cut_rows[index]  # a whole tile, not just the band's cut of it
            for ys, xs, weights, in_tile, in_cut, columns in self._place[index]:
                # float64 and tile order: the sum is the same whichever actor finished first
                self._acc[:, ys, xs] += weights * pred[..., in_tile if whole else in_cut, columns]
            self._next += 1

    @property
    def complete(self) -> bool:
        return self._next == len(self.tiles)

    def result(self) -> np.ndarray:
        """The normalised blend as float32 (C, rows, W); every tile reaching it must have been added."""
        if not self.complete:
            raise ValueError(f"blend incomplete: {self._next} of {len(self.tiles)} tiles added")
        return (self._acc * self._inv_weight_sum).astype(np.float32)


def _columns(x: int, w: int, width: int | None) -> tuple[tuple[int, int, int], ...]:
    """(canvas column, first and end column in the tile) of the one or two runs of a window's
    columns; with `width` (a torus) taken modulo it."""
    if width is None or x + w <= width:
        return ((x, 0, w),)
    x %= width
    first = min(w, width - x)
    return ((x, 0, first),) if first == w else ((x, 0, first), (0, first, w))
