"""Planning a latent canvas as a grid of equal, overlapping tiles.

Every unit here is latent pixels. The reference tiled-diffusion scripts step by a fixed stride and
leave a strip uncovered on the right and bottom when the stride does not divide the canvas; this
planner instead fixes the tile size, puts the first and last tile flush with the edges and spreads
the tiles between them so that strides differ by at most one. Overlap is then at least what was
asked, every latent pixel is covered, and a model always sees a tile of the one size it was
planned for (which keeps batches stackable).

On a torus (`--wrap`, the canvas's opposite edges joined along an axis) there are no edges to be
flush with: `torus_axis` spaces full-size tiles evenly around the axis from any phase, and the
last tile crosses the edge. Its window then reaches past the canvas (`x + w > width`) and means
the columns `x .. x + w - 1` modulo the width; `wrapped_pieces` cuts such a window into the
rectangles of the canvas it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Window(NamedTuple):
    """A rectangle of the latent canvas: top-left corner and size, in latent pixels."""

    y: int
    x: int
    h: int
    w: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices, for indexing the last two axes of a (C, H, W) array."""
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


def plan_axis(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Start offsets of the tiles along one axis of `length` latent pixels.

    Invariants callers rely on: the first start is 0 and the last is `length - tile` (flush with
    both edges); consecutive starts differ by at most one from each other and by at most
    `tile - overlap`, so neighbours overlap by at least `overlap`. A canvas no longer than a tile
    gets one tile, which `plan_tiles` shrinks to the canvas.
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length {length} and tile {tile} must be positive")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
    if length <= tile:
        return (0,)
    span = length - tile
    # Fewest tiles whose stride does not exceed tile - overlap: n - 1 >= span / (tile - overlap).
    gaps = -(-span // (tile - overlap))
    # floor(i * span / gaps) gives strides of floor or ceil of span / gaps: even, exact at the end.
    return tuple(i * span // gaps for i in range(gaps + 1))


def torus_axis(length: int, tile: int, overlap: int, phase: int = 0) -> tuple[int, ...]:
    """Start offsets of the tiles around an axis of `length` latent pixels whose ends are joined.

    Invariants: `n = ceil(length / (tile - overlap))` tiles of size `min(tile, length)` start at
    `(phase + i * length // n) % length`, returned sorted; circular gaps between starts differ by
    at most one and are at most `tile - overlap`, so neighbours (the last and the first included,
    across the edge) overlap by at least `overlap` and every pixel is covered. Every tile is full
    size whatever the phase: a torus has no edge to clip at. An axis no longer than the tile gets
    one tile as long as the axis, starting at `phase % length` (rolled, so the model sees across
    the edge when the phase moves).
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length {length} and tile {tile} must be positive")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
    if phase < 0:
        raise ValueError(f"phase {phase} must not be negative")
    if length <= tile:
        return (phase % length,)
    n = -(-length // (tile - overlap))
    return tuple(sorted((phase + i * length // n) % length for i in range(n)))


def wrapped_pieces(window: Window, height: int, width: int) -> tuple[tuple[Window, int, int], ...]:
    """The rectangles of a `height` x `width` canvas that `window` covers, each with the row and
    column in the window where it starts: one for a window inside the canvas, up to four for one
    that crosses a joined edge (rows and columns taken modulo the canvas). Row-major order."""
    if window.h > height or window.w > width:
        raise ValueError(f"window {tuple(window)} is larger than the canvas {height}x{width}")
    return tuple(
        (Window(y, x, h, w), ty, tx)
        for y, h, ty in _runs(window.y, window.h, height)
        for x, w, tx in _runs(window.x, window.w, width)
    )


def _runs(start: int, size: int, length: int) -> tuple[tuple[int, int, int], ...]:
    """(canvas start, size, offset in the window) of the one or two runs of `size` pixels from
    `start` around an axis of `length`."""
    start %= length
    first = min(size, length - start)
    return ((start, first, 0),) if first == size else ((start, first, 0), (0, size - first, first))


@dataclass(frozen=True)
class TileGrid:
    """Tiles covering a latent canvas of `height` x `width`, in row-major order.

    The order is part of the contract: blending accumulates in this order so that the result does
    not depend on which actor finished first. Along a wrapped axis (`wrap_y`, `wrap_x`) a window
    may reach past the canvas and continues at its other edge (`wrapped_pieces`).
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    wrap_y: bool = False
    wrap_x: bool = False

    @property
    def windows(self) -> tuple[Window, ...]:
        return tuple(Window(y, x, self.tile_h, self.tile_w) for y in self.ys for x in self.xs)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def batches(self, size: int) -> tuple[tuple[int, ...], ...]:
        """Tile indices grouped in fixed consecutive batches of at most `size`.

        Batches depend only on the grid and `size`, never on how many actors run them, because
        a batched matmul may round differently from a single one: fixing the batches fixes bits.
        """
        if size < 1:
            raise ValueError(f"batch size {size} must be at least 1")
        n = len(self)
        return tuple(tuple(range(i, min(i + size, n))) for i in range(0, n, size))


def plan_tiles(
    height: int, width: int, tile: int, overlap: int, wrap_y: bool = False, wrap_x: bool = False
) -> TileGrid:
    """Plan square `tile` tiles with at least `overlap` shared pixels over a latent canvas.

    An axis shorter than the tile gets one tile as long as the canvas, so a small canvas is a
    single tile covering it whole (the plain, untiled render). A wrapped axis is planned around
    the torus (`torus_axis`, phase 0).
    """
    return TileGrid(
        height=height,
        width=width,
        tile_h=min(tile, height),
        tile_w=min(tile, width),
        ys=(torus_axis if wrap_y else plan_axis)(height, tile, overlap),
        xs=(torus_axis if wrap_x else plan_axis)(width, tile, overlap),
        wrap_y=wrap_y,
        wrap_x=wrap_x,
    )
