"""Row bands of the latent: which rows of a tile each band owns, and cutting/joining tiles by them.

A band is rows [y0, y1) of the latent, in latent pixels; bands are contiguous and cover the
canvas. A tile's window is assembled from the bands under it (joined in row order) and its
prediction is cut the same way, so each band's reducer sees exactly the rows it owns. Cuts are
tile-relative rows `(a, b)`, `None` where a tile does not reach a band.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from gigacanvas.tiling.grid import Window

Cut = Optional[tuple[int, int]]


def tile_rows_in_band(window: Window, y0: int, y1: int) -> Cut:
    """The rows of `window` inside band [y0, y1), relative to the window's top; None if none."""
    a, b = max(window.y, y0), min(window.y + window.h, y1)
    return (a - window.y, b - window.y) if a < b else None


def batch_cuts(
    windows: Sequence[Window], batch: Sequence[int], bands: Sequence[tuple[int, int]]
) -> tuple[tuple[int, tuple[Cut, ...]], ...]:
    """For a batch of tiles: each band it reaches, in row order, with that band's cut of every tile."""
    out = []
    for band, (y0, y1) in enumerate(bands):
        cuts = tuple(tile_rows_in_band(windows[i], y0, y1) for i in batch)
        if any(c is not None for c in cuts):
            out.append((band, cuts))
    return tuple(out)


def join_rows(parts: Sequence[Sequence[np.ndarray | None]]) -> np.ndarray:
    """Tiles (B, C, h, w) from per-band lists of (C, rows, w) pieces (None where a band misses a tile)."""
    count = len(parts[0])
    tiles = [np.concatenate([p[i] for p in parts if p[i] is not None], axis=1) for i in range(count)]
    return np.stack(tiles)


def cut_rows(preds: np.ndarray, cuts: Sequence[tuple[int, Sequence[Cut]]]) -> list[list[np.ndarray | None]]:
    """Per band, the rows of each tile's prediction it owns (copies, so each ships alone)."""
    return [
        [None if c is None else np.ascontiguousarray(pred[:, c[0] : c[1]]) for pred, c in zip(preds, band_cuts)]
        for _, band_cuts in cuts
    ]
