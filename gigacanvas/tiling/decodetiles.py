"""Planning the seamless VAE decode: disjoint tile cores, each grown by a halo.

Every unit here is latent pixels. The cores partition the canvas (no overlap, no gap), so each
output pixel is decoded by exactly one tile and each pixel of every intermediate activation is
counted once in the shared GroupNorm statistics. The halo is the decoder's receptive radius past
the mid-block (see actors/vaedecode.py): with it, a tile's core is computed exactly as a decode of
the whole canvas computes it, so no blending is needed and there is nothing to blend away.
Cores are a regular grid from the top-left corner; the last row and column take the remainder.
Which passes run over these tiles is tiling/decodepasses.py's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gigacanvas.tiling.grid import Window


@dataclass(frozen=True)
class DecodeTile:
    """One tile of the decode: the `core` it owns and the `window` it reads (core plus halo,
    clipped to the canvas), both in latent pixels on the whole canvas."""

    core: Window
    window: Window

    @property
    def core_in_window(self) -> Window:
        """The core relative to the window's corner: where the owned rows sit in what was read."""
        return Window(self.core.y - self.window.y, self.core.x - self.window.x, self.core.h, self.core.w)


def _starts(length: int, core: int) -> tuple[tuple[int, int], ...]:
    return tuple((y, min(core, length - y)) for y in range(0, length, core))


def plan_decode_tiles(height: int, width: int, core: int, halo: int) -> tuple[DecodeTile, ...]:
    """Tiles of at most `core` x `core` latent pixels covering `height` x `width`, row-major.

    The order is part of the contract: statistics are merged in it, so the decode does not depend
    on which actor answered first. `core` 0 (or one at least the canvas) is one tile: the whole
    decode, with no halo to read.
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
            y0, x0 = max(0, y - halo), max(0, x - halo)
            y1, x1 = min(height, y + h + halo), min(width, x + w + halo)
            tiles.append(DecodeTile(Window(y, x, h, w), Window(y0, x0, y1 - y0, x1 - x0)))
    return tuple(tiles)


def overlapping(parts: list[Window], window: Window) -> list[int]:
    """Indices of the parts that meet `window`: the checkpoints a tile's window is pasted from."""
    return [
        i
        for i, p in enumerate(parts)
        if p.y < window.y + window.h and window.y < p.y + p.h and p.x < window.x + window.w and window.x < p.x + p.w
    ]


def paste(window: Window, parts: list[tuple[Window, np.ndarray]], scale: int) -> np.ndarray:
    """`window`'s activations (C, h * scale, w * scale) from parts that cover it, each a (C, ...)
    array over its own latent window at `scale` pixels per latent pixel; uncovered pixels raise."""
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


def strided(core: Window, values: np.ndarray, scale: int, stride: int) -> tuple[Window, np.ndarray]:
    """The pixels of a core's activations (at `scale` pixels per latent pixel) whose canvas
    coordinates are multiples of `stride`, and the window they fill in the strided canvas: the
    cores' samples tile `strided_shape` exactly, as slicing the whole canvas `[::stride]` would."""
    y, x = core.y * scale, core.x * scale
    oy, ox = -y % stride, -x % stride
    part = values[:, oy::stride, ox::stride]
    return Window((y + oy) // stride, (x + ox) // stride, *part.shape[1:]), part


def strided_shape(height: int, width: int, scale: int, stride: int) -> tuple[int, int]:
    """(h, w) of a (height, width) latent canvas's activations at `scale`, every `stride`-th pixel."""
    return -(-height * scale // stride), -(-width * scale // stride)
