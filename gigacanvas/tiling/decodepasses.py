"""Which passes the seamless decode runs over its tiles (tiling/decodetiles.py plans the tiles).

The exact decode gathers each GroupNorm's statistics in a pass of its own, so without help every
pass would run the decoder from the mid-block's output again. `plan_passes` cuts that: the tail's
up-blocks are segments, and after the last GroupNorm of a segment one pass keeps every core's
activations at the segment's end (a checkpoint), from which the next segment's passes start, with
the smaller halo of what is left. A checkpoint is taken only where its bytes stay within a budget
fixed by the caller, so the passes (and their bits) follow from the canvas alone, never from the
cluster's memory.

The fast mode needs no pass per GroupNorm: `plan_fast` gathers the first up-block's statistics
exactly (at the latent's resolution they cost little), then estimates every later one from a
sample: a grid of crops reaching both edges of the canvas along each axis (tiling/decodetiles.py's
`sample_crops`), read at that block's end (or at the mid-block's output where no checkpoint fits)
and decoded together on one worker, each GroupNorm's statistics pooled over their cores with each
stratum's weight (actors/vaedecode.py's `sample`). A crop's core is the real activation and the
edge bands, where zero padding makes the activations unlike the middle's, are sampled whole, so
the estimate errs only by how the middle varies. Its predecessor, a strided sample of the whole
canvas (every k-th pixel, decoded whole), erred by what striding does to the convolutions after
it (docs/benchmarks.md has both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Bytes one checkpoint may take in Ray's object store (spilled to disk past its size): 4 GiB holds
# every checkpoint of SD3.5's VAE up to a 2048 px canvas (its last, 256 channels at full
# resolution, is 4 GiB there) and the first (512 channels at 1/4 resolution) up to 4096 px. A
# constant, so the passes depend on the spec alone.
CHECKPOINT_BUDGET = 4 << 30

# The fast mode's crops: cores of this many latent pixels a side (256 px). Smaller cores spread the
# sample over more of the canvas for the same work but pay more halo each (SD3.5's VAE reads 6
# latent pixels around a core from the first up-block's end, 13 from the mid-block's output).
SAMPLE_CORE = 32


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

    def first_norm(self, boundary: int) -> int:
        """Index of the first GroupNorm a run from `boundary` calls (those before it never run)."""
        return sum(1 for s in self.norm_segments if s < boundary)

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
    (a checkpoint) or, past the last segment, its pixels. A `sample` pass runs the fast mode's
    crops instead of the tiles, once, and estimates every GroupNorm not yet known."""

    start: int
    end: int
    probe: int | None = None
    keep: bool = True  # without a probe, before the last segment: keep the core as a checkpoint
    sample: bool = False


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


def plan_fast(layout: TailLayout, height: int, width: int, budget: int) -> tuple[DecodePass, ...]:
    """The fast decode's passes: the first segment's GroupNorms exactly, a checkpoint at its end if
    it fits `budget`, the sample from there (else from the mid-block's output), and the pixels."""
    last = layout.segments - 1
    passes = [DecodePass(0, 0, k) for k, s in enumerate(layout.norm_segments) if s == 0]
    if layout.segments == 1:
        return (*passes, DecodePass(0, 0))
    start = 0
    if layout.checkpoint_bytes(1, height, width) <= budget:
        passes.append(DecodePass(0, 0))
        start = 1
    return (*passes, DecodePass(start, last, sample=True), DecodePass(start, last))
