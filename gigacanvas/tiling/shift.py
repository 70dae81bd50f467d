"""Shifted windows: a tile grid per step, offset by the seed and the step, so seams cannot build up.

Every unit here is latent pixels. A fixed grid puts its tile borders in the same place at every
step, and whatever the tiles disagree about there piles up into a seam. Here each step's interior
tiles sit at `phase + k * stride` (stride = tile - overlap) and the phase moves every step. The
phase of an axis walks all `stride` values once before any repeats (a step times a multiplier
coprime with the stride, near a golden-ratio fraction of it, so consecutive steps land far apart),
from a start drawn from the seed: the grids depend on the seed and the step alone, never on the
actors or timing, and a resumed render finds the grid of its step again.

Edge tiles stay full size and flush with the canvas (a tile at 0 and one at `length - tile`),
unlike a clipped layout: the model always sees the one tile size it was planned for, a batch
stacks, one weight map serves every tile (tiling/blend.py), and nothing predicts a sliver a few
pixels wide. The price is at most one extra tile per axis and step, where the flush edge tile
overlaps the first shifted one by more than `overlap` (docs/benchmarks.md, benchmarks/seams.py).

A wrapped axis (`--wrap`, tiling/grid.py's `torus_axis`) has no edge to be flush with: its tiles,
all full size, are evenly spaced around the torus from the phase, so the grid shifts freely and
costs no extra tile. An axis no longer than a tile keeps its one tile, rolled by a phase in
`[0, length)`, so the model sees across the joined edge.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

from gigacanvas.tiling.grid import TileGrid, plan_tiles, torus_axis

# Per-axis step multipliers as fractions of the stride: the R2 sequence's (1/rho, 1/rho^2, with
# rho the plastic number), whose 2-D points spread more evenly than two golden-ratio walks.
_FRACTIONS = (0.7548776662466927, 0.5698402909980532)  # rows, columns


def _multiplier(stride: int, axis: int) -> int:
    """The integer nearest `stride * fraction` that is coprime with `stride` (so the phases
    `start + step * m mod stride` take every value once in `stride` steps)."""
    near = round(stride * _FRACTIONS[axis])
    for d in range(stride + 1):
        for m in (near + d, near - d):
            if m > 0 and math.gcd(m, stride) == 1:
                return m
    return 1  # stride 1: every phase is 0


def shift_phase(seed: int, step: int, axis: int, stride: int) -> int:
    """The offset in [0, stride) of step `step`'s tiles along `axis` (0 rows, 1 columns).

    The start is a hash of the seed (not numpy's generator, whose streams may change between
    releases): a picture re-renders with the same grids on any later gigacanvas.
    """
    if stride < 1:
        raise ValueError(f"stride {stride} must be positive")
    digest = hashlib.blake2b(f"gigacanvas-shift:{seed}:{axis}".encode(), digest_size=8).digest()
    start = int.from_bytes(digest, "big") % stride
    return (start + step * _multiplier(stride, axis)) % stride


def shifted_axis(length: int, tile: int, overlap: int, phase: int) -> tuple[int, ...]:
    """Start offsets along one axis: 0, then `phase + k * (tile - overlap)` inside, then flush.

    Invariants: the first start is 0 and the last `length - tile`; consecutive starts are
    increasing and at most `tile - overlap` apart, so neighbours overlap by at least `overlap`
    and every pixel is covered. An axis no longer than a tile gets one tile (never shifted).
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length {length} and tile {tile} must be positive")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
    stride = tile - overlap
    if not 0 <= phase < stride:
        raise ValueError(f"phase {phase} must be in [0, stride {stride})")
    if length <= tile:
        return (0,)
    span = length - tile
    return (0, *(s for s in range(phase, span, stride) if s > 0), span)


def _axis(length: int, tile: int, overlap: int, seed: int, step: int, axis: int, wrap: bool) -> tuple[int, ...]:
    stride = tile - overlap
    if not wrap:
        return shifted_axis(length, tile, overlap, shift_phase(seed, step, axis, stride))
    return torus_axis(length, tile, overlap, shift_phase(seed, step, axis, stride if length > tile else length))


@lru_cache(maxsize=256)
def shifted_tiles(
    height: int, width: int, tile: int, overlap: int, seed: int, step: int, wrap_y: bool = False, wrap_x: bool = False
) -> TileGrid:
    """Step `step`'s grid of square `tile` tiles over a latent canvas, shifted by `seed` and `step`
    (around the torus along a wrapped axis)."""
    return TileGrid(
        height=height,
        width=width,
        tile_h=min(tile, height),
        tile_w=min(tile, width),
        ys=_axis(height, tile, overlap, seed, step, 0, wrap_y),
        xs=_axis(width, tile, overlap, seed, step, 1, wrap_x),
        wrap_y=wrap_y,
        wrap_x=wrap_x,
    )


@dataclass(frozen=True)
class StepGrids:
    """The tile grid of every step of a render: one fixed grid, or with `seed` one shifted per step.

    What the step loop and the band reducers plan each step by; a pure function of its fields,
    so the driver and every reducer compute the same grids without sending them.
    """

    height: int
    width: int
    tile: int
    overlap: int
    seed: int | None = None  # the render's seed, to shift by; None: the same grid at every step
    wrap_y: bool = False  # the canvas is a torus along rows (top and bottom joined)
    wrap_x: bool = False  # and/or along columns

    @property
    def shifted(self) -> bool:
        return self.seed is not None

    def grid(self, step: int) -> TileGrid:
        if self.seed is None:
            return plan_tiles(self.height, self.width, self.tile, self.overlap, self.wrap_y, self.wrap_x)
        return shifted_tiles(self.height, self.width, self.tile, self.overlap, self.seed, step, self.wrap_y, self.wrap_x)

    def tokens(self, step: int) -> float:
        """Latent pixels the model sees at `step`, per latent pixel of the canvas (1.0: no overlap)."""
        grid = self.grid(step)
        return len(grid) * grid.tile_h * grid.tile_w / (self.height * self.width)
