"""A window of a picture's resize: the resampler every upscale of a user's or a stage's picture uses.

Pillow's LANCZOS (a 3-lobe windowed sinc, antialiased; actors/vaeencode.py says why this filter).
`resize(box=...)` resizes the source region under the window, with each output pixel's filter
centred where the whole image's would be. Pillow 13's result is not bit for bit a crop of the
whole resize, nor of another window's (tests/tiling/test_resample.py measures it: a few levels
of 255, up to about 40 on random noise), so a caller keeps its windows fixed by its plan, never
by the number of actors, and the bytes stay deterministic; the encode's overlapping tiles blend
the difference away. On a torus (`--wrap`) the picture is periodic along the wrapped axes: a
window there is resized from a run of source pixels gathered modulo the picture (`_periodic`).
Pillow is the dependency here (no I/O, no model).
"""

from __future__ import annotations

import math

import numpy as np

from gigacanvas.tiling.grid import Window

LANCZOS_SUPPORT = 3.0  # Pillow's LANCZOS reaches 3 source pixels each side (times the scale when it shrinks)


def resize_window(
    image: np.ndarray, canvas_h: int, canvas_w: int, window: Window, wrap: tuple[bool, bool] = (False, False)
) -> np.ndarray:
    """Pixels `window` (canvas pixels) of `image` ((h, w, 3) or (h, w) uint8) resized to
    canvas_h x canvas_w with LANCZOS: (window.h, window.w[, 3]) uint8.

    Along a wrapped axis (`wrap`: rows, columns) the picture is periodic: the window may reach
    past either edge (it continues at the other), and the filter near an edge takes its source
    pixels from across it instead of clamping, so the upscale of a torus has no seam at the join.
    An unwrapped axis is resized exactly as before wrap existed."""
    from PIL import Image

    h, w = image.shape[:2]
    sy, sx = h / canvas_h, w / canvas_w
    x0, y0, x1, y1 = window.x * sx, window.y * sy, (window.x + window.w) * sx, (window.y + window.h) * sy
    if wrap[0]:
        image, y0, y1 = _periodic(image, 0, y0, y1, sy)
    if wrap[1]:
        image, x0, x1 = _periodic(image, 1, x0, x1, sx)
    mode = "RGB" if image.ndim == 3 else "L"
    with Image.fromarray(np.ascontiguousarray(image), mode) as im:
        return np.asarray(im.resize((window.w, window.h), Image.LANCZOS, box=(x0, y0, x1, y1)), dtype=np.uint8)


def _periodic(image: np.ndarray, axis: int, lo: float, hi: float, scale: float) -> tuple[np.ndarray, float, float]:
    """The source run from `lo` to `hi` (source pixels along `axis`, anywhere on the periodic
    picture) and the filter's reach on both sides, gathered modulo the picture; with `lo` and `hi`
    relative to it. The reach keeps Pillow from clamping its filter at the gathered run's ends."""
    reach = math.ceil(LANCZOS_SUPPORT * max(1.0, scale)) + 1
    start = math.floor(lo) - reach
    index = np.arange(start, math.ceil(hi) + reach) % image.shape[axis]
    return np.take(image, index, axis=axis), lo - start, hi - start
