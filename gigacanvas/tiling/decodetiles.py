"""Planning the seamless VAE decode: disjoint tile cores, each grown by a halo.

Every unit here is latent pixels. The cores partition the canvas (no overlap, no gap), so each
output pixel is decoded by exactly one tile and each pixel of every intermediate activation is
counted once in the shared GroupNorm statistics. The halo is the decoder's receptive radius past
the mid-block (see actors/vaedecode.py): with it, a tile's core is computed exactly as a decode of
the whole canvas computes it, so no blending is needed and there is nothing to blend away.
Cores are a regular grid from the top-left corner; the last row and column take the remainder.
"""

from __future__ import annotations

from dataclasses import dataclass

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
