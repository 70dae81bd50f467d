"""Centre-weighted tile weights for blending overlapping predictions.

Mixture of Diffusers weights each tile by a Gaussian with variance 0.01 in tile-relative
coordinates (sigma = 0.1 of the tile side); we keep that shape but centre it on (n - 1) / 2, the
true middle of n pixels (the reference centres on n / 2, half a pixel off, which makes the weights
lopsided), and keep the result strictly positive so that the weight sum is never zero anywhere a
tile reaches.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SIGMA = 0.1


def _gaussian_1d(n: int, sigma: float) -> np.ndarray:
    centre = (n - 1) / 2
    x = (np.arange(n, dtype=np.float64) - centre) / max(n, 1)
    return np.exp(-0.5 * (x / sigma) ** 2)


def gaussian_weights(h: int, w: int, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """A (h, w) float64 map peaking at 1 in the centre, symmetric and strictly positive.

    `sigma` is a fraction of the tile side. At the default the corner weight is about 1e-11, far
    above float64's smallest normal number, so even a pixel that only tile corners reach keeps a
    well-defined normalised blend.
    """
    if h < 1 or w < 1:
        raise ValueError(f"weight map size {h}x{w} must be positive")
    if not sigma > 0:
        raise ValueError(f"sigma {sigma} must be positive")
    return np.outer(_gaussian_1d(h, sigma), _gaussian_1d(w, sigma))
