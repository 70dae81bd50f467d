"""A tile batch's prediction with regional prompts: once per prompt it touches, blended by the masks.

The masks and why a per-tile blend is MultiDiffusion's joint blend are tiling/regions.py's. Here
the worker, for each distinct prompt in order, predicts the tiles of its batch that the prompt
touches, in one model call with that prompt's conditioning (classifier-free guidance per prompt
as usual, the negative prompt shared), and folds weight x prediction into a float64 sum in prompt
order. The sub-batches follow from the plan's batch and the regions alone, never from the number
of actors, so the bits do not either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.regions import RegionLayout


@dataclass(frozen=True)
class RegionalConditioning:
    """A render's conditioning per distinct prompt, the base prompt's first (tiling/regions.py's
    prompt indices); encoded once per render, like a single prompt's."""

    conds: tuple[Any, ...]


def predict_regional(
    predict: Callable[[np.ndarray, Any], np.ndarray], tiles: np.ndarray, windows: Sequence[Window],
    layout: RegionLayout, cond: RegionalConditioning,
) -> np.ndarray:
    """The blended prediction (B, C, h, w) float32 for `tiles` at `windows` (latent pixels), with
    `predict(tiles, cond)` one guided model call. A tile that touches one prompt only gets that
    prompt's prediction bit for bit (its weight is exactly 1)."""
    if len(windows) != len(tiles) or len(cond.conds) != layout.prompts:
        raise ValueError(f"{len(tiles)} tiles with {len(windows)} windows, {len(cond.conds)} prompts for {layout.prompts}")
    weights = [layout.weights(w) for w in windows]
    out = np.zeros(tiles.shape, dtype=np.float64)
    for prompt in range(layout.prompts):
        touching = [i for i, w in enumerate(weights) if w[prompt].any()]
        if not touching:
            continue
        preds = predict(np.ascontiguousarray(tiles[touching]), cond.conds[prompt])
        for pred, i in zip(preds, touching):
            out[i] += weights[i][prompt] * pred  # float64, prompt order: the same sum on every worker
    return out.astype(np.float32)
