"""Row bands of the latent: which rows of a tile each band owns, and cutting/joining tiles by them.

A band is rows [y0, y1) of the latent, in latent pixels; bands are contiguous and cover the
canvas. A tile's window is assembled from the bands under it and its prediction is cut the same
way, so each band's reducer sees exactly the rows it owns. A cut is the tile-relative row runs
`((a, b), ...)` a band owns, in tile order, `None` where a tile does not reach the band. Without
wrap that is one run; on a torus (`height` given) a tile crossing the joined edge can reach one
band in two runs (its first and last rows) and the bands under it are no longer in row order, so
joining places each band's rows by its cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from gigacanvas.tiling.grid import Window

Cut = Optional[tuple[tuple[int, int], ...]]


def tile_rows_in_band(window: Window, y0: int, y1: int, height: int | None = None) -> Cut:
    """The runs of `window`'s rows inside band [y0, y1), relative to the window's top; None if
    none. With `height`, the window's rows are taken modulo it (a torus)."""
    runs = []
    offset = 0
    if height is None:
        pieces = [(window.y, window.h)]
    else:
        start = window.y % height
        first = min(window.h, height - start)
        pieces = [(start, first), (0, window.h - first)] if first < window.h else [(start, first)]
    for y, h in pieces:
        a, b = max(y, y0), min(y + h, y1)
        if a < b:
            runs.append((a - y + offset, b - y + offset))
        offset += h
    return tuple(runs) or None


def cut_size(cut: Cut) -> int:
    """How many rows a cut holds."""
    return 0 if cut is None else sum(b - a for a, b in cut)


def batch_cuts(
    windows: Sequence[Window], batch: Sequence[int], bands: Sequence[tuple[int, int]], height: int | None = None
) -> tuple[tuple[int, tuple[Cut, ...]], ...]:
    """For a batch of tiles: each band it reaches, in row order, with that band's cut of every tile
    (rows modulo `height` on a torus)."""
    out = []
    for band, (y0, y1) in enumerate(bands):
        cuts = tuple(tile_rows_in_band(windows[i], y0, y1, height) for i in batch)
        if any(c is not None for c in cuts):
            out.append((band, cuts))
    return tuple(out)


def join_rows(parts: Sequence[Sequence[np.ndarray | None]], cuts: Sequence[tuple[int, Sequence[Cut]]] | None = None) -> np.ndarray:
    """Tiles (B, C, h, w) from per-band lists of (C, rows, w) pieces (None where a band misses a tile).

    Without `cuts` the pieces are stacked in band order (a tile inside the canvas); with them each
    band's runs go to the tile rows its cut names (a tile crossing a torus's joined edge)."""
    count = len(parts[0])
    if cuts is None:
        return np.stack([np.concatenate([p[i] for p in parts if p[i] is not None], axis=1) for i in range(count)])
    tiles = []
    for i in range(count):
        pieces = [(cut[i], p[i]) for p, (_, cut) in zip(parts, cuts) if p[i] is not None]
        first = pieces[0][1]
        tile = np.empty((first.shape[0], sum(cut_size(c) for c, _ in pieces), first.shape[2]), first.dtype)
        for cut, piece in pieces:
            at = 0
            for a, b in cut:
                tile[:, a:b] = piece[:, at : at + b - a]
                at += b - a
        tiles.append(tile)
    return np.stack(tiles)


def cut_rows(preds: np.ndarray, cuts: Sequence[tuple[int, Sequence[Cut]]]) -> list[list[np.ndarray | None]]:
    """Per band, the rows of each tile's prediction it owns, its runs in tile order (copies, so
    each ships alone)."""
    return [[None if c is None else _take(pred, c) for pred, c in zip(preds, band_cuts)] for _, band_cuts in cuts]


def _take(pred: np.ndarray, cut: tuple[tuple[int, int], ...]) -> np.ndarray:
    if len(cut) == 1:
        return np.ascontiguousarray(pred[:, cut[0][0] : cut[0][1]])
    return np.concatenate([pred[:, a:b] for a, b in cut], axis=1)
