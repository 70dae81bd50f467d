"""The sizes and the start step of a composed render: pure arithmetic, no model, no I/O.

A composed render (cluster/compose.py) first renders the whole picture at about the model's
native pixel count, then refines it at larger sizes. `stage_sizes` gives every stage's size in
pixels, `start_step` the step a refinement of `strength` starts at. Both depend on the spec
alone, so every run (and every resume) of a render addresses the same stages.
"""

from __future__ import annotations

import math


def _aligned(value: float, align: int) -> int:
    """`value` to the nearest multiple of `align`, at least `align`."""
    return max(align, int(round(value / align)) * align)


def composition_size(width: int, height: int, native_px: int, align: int) -> tuple[int, int]:
    """(width, height) in pixels with about `native_px`^2 pixels and the canvas's aspect ratio,
    each side a multiple of `align` and no longer than the canvas's."""
    aspect = width / height
    w = _aligned(native_px * math.sqrt(aspect), align)
    h = _aligned(native_px / math.sqrt(aspect), align)
    return min(w, width), min(h, height)


def stage_sizes(width: int, height: int, native_px: int, align: int, stages: int) -> tuple[tuple[int, int], ...]:
    """The composition's size, then each of `stages` refinements': every intermediate stage twice
    the side of the one before (progressive upscaling), the last the canvas itself.

    Raises ValueError (with the largest count that fits) when the canvas is no larger than the
    composition, or an intermediate stage would not be smaller than the canvas on both sides.
    """
    if stages < 1:
        raise ValueError("a composed render has at least one refinement stage")
    cw, ch = composition_size(width, height, native_px, align)
    if cw * ch >= width * height:
        raise ValueError(
            f"the canvas {width}x{height} px is no larger than the model's native area ({native_px}x{native_px} px)"
        )
    sizes = [(cw, ch)]
    for k in range(1, stages):
        w, h = _aligned(cw * 2**k, align), _aligned(ch * 2**k, align)
        if w >= width or h >= height:
            raise ValueError(
                f"stage {k} would be {w}x{h} px, not smaller than the canvas {width}x{height} px; "
                f"at most {k} stage(s) fit"
            )
        sizes.append((w, h))
    sizes.append((width, height))
    return tuple(sizes)


def start_step(steps: int, strength: float) -> int:
    """The step a refinement of `strength` starts at, as diffusers' img2img pipelines compute it
    (`t_start = int(steps - min(steps * strength, steps))`): it runs the last `steps - t_start`
    steps, at least one for any strength above 0, all of them at 1."""
    init = min(steps * strength, steps)
    return int(max(steps - init, 0))
