"""Regional prompts' weights on the latent grid: which prompt draws where, with soft edges.

A region is a rectangle with its own prompt; the base prompt draws the rest. Following
MultiDiffusion's region control, every prompt predicts the tiles it touches and the predictions
are blended by per-prompt masks. Here a tile's predictions are blended by the masks first (per
pixel, normalised to sum to 1) and the result goes through the ordinary tile blend
(tiling/blend.py). That is MultiDiffusion's joint blend, sum_t sum_p w_t m_p x_tp / sum_t sum_p
w_t m_p, exactly: the masks m_p are functions of the canvas position, not of the tile, so the
denominator is (sum_p m_p)(sum_t w_t) and the mask normalisation factors out of the tile sum. It
keeps the reducers, the bands and the bytes a worker ships per tile as they were.

The masks:
- A region's mask is its rectangle's indicator convolved with a Gaussian (sigma = feather / 6)
  truncated at 3 sigma: a soft edge `feather` wide, centred on the rectangle's border (0.5 on
  it), symmetric about it, and exactly 0 beyond feather / 2 outside, so the prompts a tile
  touches are exactly those that weigh in it (no far Gaussian tail makes every tile predict every
  prompt). A border flush with a plain canvas edge is not feathered: the region keeps full
  strength up to the edge (nothing lies beyond it to blend with). On a torus axis (`--wrap`) there
  is no edge: the mask is periodic and a feather crossing the joined edge continues on the other
  side (the convolution of the periodic rectangle, so it never exceeds 1).
- The base prompt's weight is the complement, max(0, 1 - sum of the region masks), as
  MultiDiffusion's region demo makes its background mask. Not 1 everywhere: the base would then
  dilute every region by half at its centre, and a region could never draw alone.
- Weights per pixel are the masks divided by their sum (at least 1 in exact arithmetic, so never a
  division by zero): overlapping regions share their overlap in proportion to their masks.
  Regions with the same prompt (the base's included) are one prompt whose mask is their sum: it
  predicts once, and a region repeating the base prompt changes nothing. Where a tile touches one
  prompt only, its weight is exactly 1.0 and the tile's prediction passes through bit for bit.

Hand-written: no library blends diffusion predictions by region masks; `math.erf` gives the
Gaussian's integral (SciPy is not a dependency, and the arrays are one tile's side long).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gigacanvas.tiling.grid import Window

SIGMAS = 3.0  # the feather kernel is a Gaussian truncated at this many sigmas each side
CUTOFF = 1e-12  # weights below this are rounding noise of a sum that is 0 in exact arithmetic
_ERF = np.frompyfunc(math.erf, 1, 1)
_LOW = 0.5 * (1.0 + math.erf(-SIGMAS / math.sqrt(2.0)))  # the kernel's mass cut off each side


@dataclass(frozen=True)
class Rect:
    """A region's rectangle [y0, y1) x [x0, x1) in latent pixels (floats: a pixel rectangle need
    not fall on latent pixel edges), and the index of its prompt among the distinct prompts."""

    y0: float
    x0: float
    y1: float
    x1: float
    prompt: int


@dataclass(frozen=True)
class RegionLayout:
    """Every region of a latent canvas `height` x `width`: what a worker needs to weigh its tiles.

    Prompt 0 is the base prompt; `prompts` counts the distinct prompts. `feather` is the width of
    a soft edge, in latent pixels (0: hard edges)."""

    height: int
    width: int
    rects: tuple[Rect, ...]
    prompts: int
    feather: float
    wrap_y: bool = False
    wrap_x: bool = False

    def weights(self, window: Window) -> np.ndarray:
        """(prompts, h, w) float64: each prompt's share of every latent pixel of `window` (which may
        reach past the canvas's joined edge on a torus); non-negative, summing to 1 per pixel."""
        ys = window.y + np.arange(window.h, dtype=np.float64) + 0.5  # pixel centres
        xs = window.x + np.arange(window.w, dtype=np.float64) + 0.5
        masks = [
            np.outer(
                _axis(ys, r.y0, r.y1, self.feather, self.height, self.wrap_y),
                _axis(xs, r.x0, r.x1, self.feather, self.width, self.wrap_x),
            )
            for r in self.rects
        ]
        covered = np.zeros((window.h, window.w), dtype=np.float64)
        for mask in masks:  # fixed order: the same sums on every worker
            covered += mask
        shares = np.zeros((self.prompts, window.h, window.w), dtype=np.float64)
        shares[0] = np.maximum(0.0, 1.0 - covered)
        for rect, mask in zip(self.rects, masks):
            shares[rect.prompt] += mask
        shares[shares < CUTOFF] = 0.0
        total = shares[0].copy()
        for p in range(1, self.prompts):
            total += shares[p]
        return shares / total

    def empty(self) -> tuple[int, ...]:
        """The regions (indices into `rects`) whose mask is 0 at every latent pixel centre: a
        rectangle narrower than a latent pixel with too little feather to reach a centre draws
        nothing, which a user must hear about rather than find in the picture."""
        empty = []
        for index, r in enumerate(self.rects):
            profiles = []
            for a, b, size, wrap in ((r.y0, r.y1, self.height, self.wrap_y), (r.x0, r.x1, self.width, self.wrap_x)):
                reach = self.feather / 2 + 1
                t = np.arange(max(0, math.floor(a - reach)), min(size, math.ceil(b + reach)), dtype=np.float64) + 0.5
                profiles.append(_axis(t, a, b, self.feather, size, wrap))
            if not all(p.any() for p in profiles):
                empty.append(index)
        return tuple(empty)

    def touches(self, window: Window) -> tuple[int, ...]:
        """The prompts with a nonzero weight somewhere in `window`: those the tile predicts."""
        shares = self.weights(window)
        return tuple(p for p in range(self.prompts) if shares[p].any())


def ramp(d: np.ndarray, half: float) -> np.ndarray:
    """The feather kernel's integral at signed distance `d` past an edge: 0 at -half and before,
    1 at +half and after, 0.5 at the edge; R(d) + R(-d) = 1. `half` 0: a step (1 from d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    if half <= 0:
        return (d >= 0).astype(np.float64)
    u = np.clip(d / half, -1.0, 1.0)
    cdf = 0.5 * (1.0 + _ERF(u * (SIGMAS / math.sqrt(2.0))).astype(np.float64))
    out = (cdf - _LOW) / (1.0 - 2.0 * _LOW)
    out[u <= -1.0] = 0.0
    out[u >= 1.0] = 1.0
    return out


def _box(t: np.ndarray, a: float, b: float, half: float) -> np.ndarray:
    """The indicator of [a, b) convolved with the feather kernel, at positions `t`."""
    return ramp(t - a, half) - ramp(t - b, half)


def _axis(t: np.ndarray, a: float, b: float, feather: float, size: int, wrap: bool) -> np.ndarray:
    """A region's profile along one axis of length `size` at pixel centres `t`."""
    half = feather / 2
    if wrap:  # periodic: the sum of the rectangle's copies one period apart
        t = np.mod(t, size)
        reach = math.ceil(half / size) + 1
        out = np.zeros_like(t)
        for k in range(-reach, reach + 1):
            out += _box(t - k * size, a, b, half)
        return np.clip(out, 0.0, 1.0)
    lo = -math.inf if a <= 0 else a  # flush with the canvas edge: no feather there
    hi = math.inf if b >= size else b
    return _box(t, lo, hi, half)


def layout(
    regions: tuple[tuple[int, int, int, int, str], ...], base_prompt: str, width_px: int, height_px: int,
    scale: int, feather_px: float, wrap_y: bool = False, wrap_x: bool = False,
) -> tuple[RegionLayout, tuple[str, ...]]:
    """The layout of `regions` ((x, y, w, h, prompt), pixels) on a width_px x height_px canvas
    whose latent is `scale` times smaller, and the distinct prompts in order (the base's first,
    then the regions' in order of first appearance)."""
    prompts = [base_prompt]
    rects = []
    for x, y, w, h, prompt in regions:
        if prompt not in prompts:
            prompts.append(prompt)
        rects.append(Rect(y / scale, x / scale, (y + h) / scale, (x + w) / scale, prompts.index(prompt)))
    return (
        RegionLayout(height_px // scale, width_px // scale, tuple(rects), len(prompts), feather_px / scale, wrap_y, wrap_x),
        tuple(prompts),
    )
