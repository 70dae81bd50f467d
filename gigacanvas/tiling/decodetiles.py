"""Planning the seamless VAE decode: disjoint tile cores, each grown by a halo.

Every unit here is latent pixels. The cores partition the canvas (no overlap, no gap), so each
output pixel is decoded by exactly one tile and each pixel of every intermediate activation is
counted once in the shared GroupNorm statistics. The halo is the decoder's receptive radius past
the mid-block (see actors/vaedecode.py): with it, a tile's core is computed exactly as a decode of
the whole canvas computes it, so no blending is needed and there is nothing to blend away.
Cores are a regular grid from the top-left corner; the last row and column take the remainder.
Which passes run over these tiles is tiling/decodepasses.py's business.

On a torus (`--wrap`) the whole decode pads its convs circularly across the joined edges, so a
tile's halo there is not clipped: its window reaches past the canvas (it may start below 0 or be
longer than the axis) and means the rows or columns modulo the canvas, which `paste` gathers. A
tile's own convs then pad with zeros only inside the halo, which never reaches its core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gigacanvas.tiling.grid import Window


@dataclass(frozen=True)
class DecodeTile:
    """One tile of the decode: the `core` it owns and the `window` it reads (core plus halo,
    clipped to the canvas but along a wrapped axis), both in latent pixels on the whole canvas."""

    core: Window
    window: Window

    @property
    def core_in_window(self) -> Window:
        """The core relative to the window's corner: where the owned rows sit in what was read."""
        return Window(self.core.y - self.window.y, self.core.x - self.window.x, self.core.h, self.core.w)


def _starts(length: int, core: int) -> tuple[tuple[int, int], ...]:
    return tuple((y, min(core, length - y)) for y in range(0, length, core))


def plan_decode_tiles(
    height: int, width: int, core: int, halo: int, wrap_y: bool = False, wrap_x: bool = False
) -> tuple[DecodeTile, ...]:
    """Tiles of at most `core` x `core` latent pixels covering `height` x `width`, row-major.

    The order is part of the contract: statistics are merged in it, so the decode does not depend
    on which actor answered first. `core` 0 (or one at least the canvas) is one tile: the whole
    decode, with no halo to read (on a torus it pads circularly itself). Along a wrapped axis a
    window is its core grown by the whole halo on both sides, never clipped.
    """
    if height < 1 or width < 1:
        raise ValueError(f"canvas {height}x{width} must be positive")
    if core < 0 or halo < 0:
        raise ValueError(f"core {core} and halo {halo} must not be negative")
    core_h = height if core == 0 else min(core, height)
    core_w = width if core == 0 else min(core, width)
    tiles = []
    for y, h in _starts(height, core_h):
        for x, w in _starts(width, core_w):
            one = core == 0 or (core_h == height and core_w == width)  # the whole decode: no halo
            y0 = y - halo if wrap_y and not one else max(0, y - halo)
            x0 = x - halo if wrap_x and not one else max(0, x - halo)
            y1 = y + h + halo if wrap_y and not one else min(height, y + h + halo)
            x1 = x + w + halo if wrap_x and not one else min(width, x + w + halo)
            tiles.append(DecodeTile(Window(y, x, h, w), Window(y0, x0, y1 - y0, x1 - x0)))
    return tuple(tiles)


def overlapping(parts: list[Window], window: Window, height: int | None = None, width: int | None = None) -> list[int]:
    """Indices of the parts that meet `window`: the checkpoints a tile's window is pasted from
    (with `height` and/or `width`, the window's rows and/or columns modulo them: a torus)."""
    ys, xs = _arcs(window.y, window.h, height), _arcs(window.x, window.w, width)
    return [
        i
        for i, p in enumerate(parts)
        if any(p.y < b and a < p.y + p.h for a, b in ys) and any(p.x < b and a < p.x + p.w for a, b in xs)
    ]


def _arcs(start: int, size: int, length: int | None) -> list[tuple[int, int]]:
    """The canvas intervals [a, b) that `size` pixels from `start` cover, modulo `length` if given."""
    if length is None:
        return [(start, start + size)]
    if size >= length:
        return [(0, length)]
    start %= length
    return [(start, start + size)] if start + size <= length else [(start, length), (0, start + size - length)]


def paste(
    window: Window, parts: list[tuple[Window, np.ndarray]], scale: int, height: int | None = None, width: int | None = None
) -> np.ndarray:
    """`window`'s activations (C, h * scale, w * scale) from parts that cover it, each a (C, ...)
    array over its own latent window at `scale` pixels per latent pixel; uncovered pixels raise.

    With `height` and/or `width` (a torus), the window's rows and/or columns are taken modulo
    them: a window that crosses the joined edges, or is longer than the canvas, is gathered from
    the parts (inside the canvas) wherever its pixels fall."""
    if height is not None or width is not None:
        return _paste_wrapped(window, parts, scale, height, width)
    channels = parts[0][1].shape[0]
    out = np.empty((channels, window.h * scale, window.w * scale), parts[0][1].dtype)
    filled = np.zeros((window.h, window.w), bool)
    for part, values in parts:
        y0, y1 = max(window.y, part.y), min(window.y + window.h, part.y + part.h)
        x0, x1 = max(window.x, part.x), min(window.x + window.w, part.x + part.w)
        if y0 >= y1 or x0 >= x1:
            continue
        out[:, (y0 - window.y) * scale : (y1 - window.y) * scale, (x0 - window.x) * scale : (x1 - window.x) * scale] = values[
            :, (y0 - part.y) * scale : (y1 - part.y) * scale, (x0 - part.x) * scale : (x1 - part.x) * scale
        ]
        filled[y0 - window.y : y1 - window.y, x0 - window.x : x1 - window.x] = True
    if not filled.all():
        raise ValueError(f"the parts leave part of window {tuple(window)} uncovered")
    return out


def _paste_wrapped(
    window: Window, parts: list[tuple[Window, np.ndarray]], scale: int, height: int | None, width: int | None
) -> np.ndarray:
    """`paste` along joined edges: each axis of the window maps to canvas indices modulo its length."""
    ys = np.arange(window.y, window.y + window.h)
    xs = np.arange(window.x, window.x + window.w)
    ys = ys % height if height is not None else ys
    xs = xs % width if width is not None else xs
    channels = parts[0][1].shape[0]
    out = np.empty((channels, window.h * scale, window.w * scale), parts[0][1].dtype)
    filled = np.zeros((window.h, window.w), bool)
    sub = np.arange(scale)
    for part, values in parts:
        ry = np.nonzero((ys >= part.y) & (ys < part.y + part.h))[0]
        rx = np.nonzero((xs >= part.x) & (xs < part.x + part.w))[0]
        if not len(ry) or not len(rx):
            continue
        to_y, to_x = (ry[:, None] * scale + sub).ravel(), (rx[:, None] * scale + sub).ravel()
        from_y = ((ys[ry] - part.y)[:, None] * scale + sub).ravel()
        from_x = ((xs[rx] - part.x)[:, None] * scale + sub).ravel()
        out[:, to_y[:, None], to_x] = values[:, from_y[:, None], from_x]
        filled[np.ix_(ry, rx)] = True
    if not filled.all():
        raise ValueError(f"the parts leave part of window {tuple(window)} uncovered")
    return out


@dataclass(frozen=True)
class SampleCrop:
    """One crop of the fast decode's sample: the `window` it reads (latent pixels on the canvas,
    across a wrapped edge where one joins) and the `pieces` of its core, each a Window relative to
    the window with the weight its pixels count with: the area of the canvas's stratum it stands
    for over the area sampled there."""

    window: Window
    pieces: tuple[tuple[Window, float], ...]


def _axis_crops(length: int, core: int, halo: int, count: int, wrap: bool) -> list[tuple[int, int, list[tuple[int, int, float]]]]:
    """Along one axis: (window start, window length, [(piece start, piece length, weight)], pieces
    relative to the window) of about `count` crops.

    A crop near an edge the canvas has (not wrapped) reaches it: its core runs to the edge, so the
    band of depth `edge` = window - halo along each edge, where the zero padding makes the
    activations unlike the middle's, is sampled whole (weight 1) and never extrapolated from the
    middle; the middle is a stratum of its own, sampled by cores spread evenly over it and
    weighted by its length over theirs. On a wrapped axis every position is alike: one stratum."""
    window = core + 2 * halo
    if window >= length:  # the axis whole: one crop edge to edge
        return [(0, length, [(0, length, 1.0)])]
    if wrap:
        count = max(1, min(count, length // core))
        starts = [(2 * i + 1) * length // (2 * count) - core // 2 for i in range(count)]
        return [(at - halo, window, [(halo, core, length / (count * core))]) for at in starts]
    edge = window - halo
    middle = length - 2 * edge
    if middle <= 0:  # the two edge crops' cores meet: they cover the axis, split where they meet
        cut = length // 2
        return [(0, window, [(0, cut, 1.0)]), (length - window, window, [(window - (length - cut), length - cut, 1.0)])]
    out = [(0, window, [(0, edge, 1.0)])]
    if middle < core:  # one core fills the middle
        out.append((edge - halo, window, [(halo, middle, 1.0)]))
    else:
        inner = max(1, min(count - 2, middle // core))
        for i in range(inner):
            at = edge + (2 * i + 1) * middle // (2 * inner) - core // 2
            at = min(max(at, edge), length - edge - core)
            out.append((at - halo, window, [(halo, core, middle / (inner * core))]))
    out.append((length - window, window, [(halo, edge, 1.0)]))
    return out


def sample_crops(
    height: int, width: int, core: int, halo: int, budget: int, wrap_y: bool = False, wrap_x: bool = False
) -> tuple[SampleCrop, ...]:
    """Crops for the fast decode's statistics: a grid of windows of `core` + 2 `halo` latent pixels
    a side, as many as fit `budget` latent pixels of window area (at least three per axis the
    canvas has edges along: both edge bands and the middle), strata as square as the canvas
    allows; every window one size, so they run as one batch. A canvas within the budget is one
    crop of itself: the exact statistics.

    Why crops and strata: a crop's core is the real activation (the convolutions past it see their
    true neighbours), unlike a strided sample of the canvas, and the weights make the pooled
    moments those of the whole canvas wherever each stratum is alike throughout. The edge bands
    matter: SD3.5's VAE at 512 px (first up-block exact), cores covering the middle 56 % of the
    canvas but no edge estimated the rest worse (2.6 of 255 off on average) than every 2nd pixel
    of all of it (1.7). At 2048 px, 3 x 3 crops (27 % of the canvas in windows) 1.19 against every
    2nd pixel's 1.50 (docs/benchmarks.md); what is left is the middle's sampling error, which
    shrinks only as the square root of the cores' area.
    """
    if height * width <= budget:
        return (SampleCrop(Window(0, 0, height, width), ((Window(0, 0, height, width), 1.0),)),)
    core = max(1, core)
    window = core + 2 * halo

    def least(length: int, wrap: bool) -> int:
        return 1 if window >= length or wrap else 3

    def most(length: int, wrap: bool) -> int:
        return 1 if window >= length else max(least(length, wrap), length // core)

    choices = [
        (ny * nx, -abs(math.log((height / ny) / (width / nx))), ny, nx)
        for ny in range(least(height, wrap_y), most(height, wrap_y) + 1)
        for nx in range(least(width, wrap_x), most(width, wrap_x) + 1)
        if ny * min(window, height) * nx * min(window, width) <= budget
        or (ny, nx) == (least(height, wrap_y), least(width, wrap_x))
    ]
    _, _, count_y, count_x = max(choices)
    crops = []
    for wy, hy, pieces_y in _axis_crops(height, core, halo, count_y, wrap_y):
        for wx, hx, pieces_x in _axis_crops(width, core, halo, count_x, wrap_x):
            pieces = tuple(
                (Window(py, px, ph, pw), fy * fx) for py, ph, fy in pieces_y for px, pw, fx in pieces_x
            )
            crops.append(SampleCrop(Window(wy, wx, hy, hx), pieces))
    return tuple(crops)


def crop_padding(crops: tuple[SampleCrop, ...], height: int, width: int, wrap_y: bool, wrap_x: bool) -> tuple[bool, bool]:
    """Along which axes a batch of `sample_crops` pads circularly: a wrapped axis its crops span
    whole (there the canvas's own edges join); a crop cut along a wrapped axis read its halo
    across the edge already and pads with zeros, like a tile."""
    window = crops[0].window
    return wrap_y and (window.y, window.h) == (0, height), wrap_x and (window.x, window.w) == (0, width)
