"""GroupNorm statistics gathered in pieces and merged exactly, in a fixed order.

A decode spread over tiles must normalise every tile with the statistics of the whole canvas.
Each tile reports, per group, (count, mean, M2) over the pixels it owns (M2: the sum of squared
deviations from its own mean); `merge` folds them with Chan et al.'s pairwise update, which keeps
float64 precision where the textbook sum-of-squares minus squared-sum would cancel. Folding in a
fixed order (tile order) makes the result the same bits whatever actor computed which tile.
A stats array is (groups, 3) float64: columns count, mean, M2.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def group_moments(values) -> np.ndarray:
    """(count, mean, M2) per row of a (groups, n) numpy array or torch tensor, in float64.

    A tensor is reduced where it lives (a GPU's activation is not copied to the host whole)."""
    if hasattr(values, "double"):  # torch
        v = values.double()
        mean = v.mean(dim=1)
        m2 = ((v - mean[:, None]) ** 2).sum(dim=1)
        mean, m2 = mean.cpu().numpy(), m2.cpu().numpy()
    else:
        v = np.asarray(values, dtype=np.float64)
        mean = v.mean(axis=1)
        m2 = ((v - mean[:, None]) ** 2).sum(axis=1)
    return np.stack([np.full_like(mean, values.shape[1]), mean, m2], axis=1)


def merge_two(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The moments of the union of two disjoint sets of pixels (Chan et al., 1979)."""
    na, nb = a[:, 0], b[:, 0]
    n = na + nb
    safe = np.where(n > 0, n, 1)
    delta = b[:, 1] - a[:, 1]
    mean = a[:, 1] + delta * nb / safe
    m2 = a[:, 2] + b[:, 2] + delta * delta * na * nb / safe
    return np.stack([n, mean, m2], axis=1)


def merge(parts: Iterable[np.ndarray]) -> np.ndarray:
    """Fold `parts` left to right; the order is the caller's contract (tile order)."""
    merged = None
    for part in parts:
        merged = part.astype(np.float64) if merged is None else merge_two(merged, part)
    if merged is None:
        raise ValueError("no statistics to merge")
    return merged


def weighted(stats: np.ndarray, weight: float) -> np.ndarray:
    """Moments standing for `weight` times as many pixels with the same mean and variance: a
    stratified sample's share of the canvas (the fast decode's crops)."""
    out = stats.astype(np.float64).copy()
    out[:, 0] *= weight
    out[:, 2] *= weight
    return out


def mean_and_variance(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group mean and the biased variance GroupNorm divides by."""
    return stats[:, 1], stats[:, 2] / stats[:, 0]
