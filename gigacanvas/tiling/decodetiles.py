"""Planning the seamless VAE decode: disjoint tile cores, each grown by a halo.

Every unit here is latent pixels. The cores partition the canvas (no overlap, no gap), so each
output pixel is decoded by exactly one tile and each pixel of every intermediate activation is
counted once in the shared GroupNorm statistics. The halo is the decoder's receptive radius past
the mid-block (see actors/vaedecode.py): with it, a tile's core is computed exactly as a decode of
the whole canvas computes it, so no blending is needed and there is nothing to blend away.
Cores are a regular grid from the top-left corner; the last row and column take the remainder.

The exact decode gathers each GroupNorm's statistics in a pass of its own, so without help every
pass would run the decoder from the mid-block's output again. `plan_passes` cuts that: the tail's
up-blocks are segments, and after the last GroupNorm of a segment one pass keeps every core's
activations at the segment's end (a checkpoint), from which the next segment's passes start, with
the smaller halo of what is left. A checkpoint is taken only where its bytes stay within a budget
fixed by the caller, so the passes (and their bits) follow from the canvas alone, never from the
cluster's memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Bytes one checkpoint may take in Ray's object store (spilled to disk past its size): 4 GiB holds
# every checkpoint of SD3.5's VAE up to a 2048 px canvas (its last, 256 channels at full
# resolution, is 4 GiB there) and the first up to 8192 px. A constant, so the passes depend on the
# spec alone.
CHECKPOINT_BUDGET = 4 << 30

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


@dataclass(frozen=True)
class TailLayout:
    """The decoder past its mid-block as the planner sees it, traced from the model once.

    Segment b is up-block b (the last one also runs the output norm and conv); boundary b is
    segment b's input, boundary 0 the mid-block's output. `reach[b]` is segment b's receptive
    radius in latent pixels (fractional: a 3x3 conv at 4 pixels per latent pixel reaches 1/4),
    `channels[b]` and `scales[b]` (pixels per latent pixel) describe boundary b, `norm_segments[k]`
    the segment GroupNorm k runs in (in call order).
    """

    norm_segments: tuple[int, ...]
    reach: tuple[float, ...]
    channels: tuple[int, ...]
    scales: tuple[int, ...]

    @property
    def segments(self) -> int:
        return len(self.reach)

    def halo(self, start: int, end: int) -> int:
        """Latent pixels a core must be grown by to run segments start..end exactly."""
        return math.ceil(sum(self.reach[start : end + 1]) - 1e-9)

    def checkpoint_bytes(self, boundary: int, height: int, width: int) -> int:
        """Float32 bytes of boundary `boundary`'s activations over a (height, width) latent."""
        s = self.scales[boundary]
        return 4 * self.channels[boundary] * height * s * width * s


@dataclass(frozen=True)
class DecodePass:
    """Every tile once: read boundary `start`, run segments start..end, and return GroupNorm
    `probe`'s moments over the core; with no probe, the core's activations at boundary end + 1
    (a checkpoint) or, past the last segment, its pixels."""

    start: int
    end: int
    probe: int | None = None


def plan_passes(layout: TailLayout, height: int, width: int, budget: int) -> tuple[DecodePass, ...]:
    """The exact decode's passes: one per GroupNorm, each from the latest checkpoint, a checkpoint
    pass after each segment whose end fits `budget` bytes, and the pixels last."""
    passes: list[DecodePass] = []
    start = 0
    last = layout.segments - 1
    for segment in range(layout.segments):
        probes = [k for k, s in enumerate(layout.norm_segments) if s == segment]
        passes += [DecodePass(start, segment, k) for k in probes]
        if segment == last:
            passes.append(DecodePass(start, segment))
        elif layout.checkpoint_bytes(segment + 1, height, width) <= budget:
            passes.append(DecodePass(start, segment))
            start = segment + 1
    return tuple(passes)


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
