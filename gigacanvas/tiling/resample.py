"""A window of a picture's resize: the resampler every upscale of a user's or a stage's picture uses.

Pillow's LANCZOS (a 3-lobe windowed sinc, antialiased; actors/vaeencode.py says why this filter).
`resize(box=...)` resizes the source region under the window, with each output pixel's filter
centred where the whole image's would be. Pillow 13's result is not bit for bit a crop of the
whole resize, nor of another window's (tests/tiling/test_resample.py measures it: a few levels
of 255, up to about 40 on random noise), so a caller keeps its windows fixed by its plan, never
by the number of actors, and the bytes stay deterministic; the encode's overlapping tiles blend
the difference away. Pillow is the dependency here (no I/O, no model).
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.grid import Window


def resize_window(image: np.ndarray, canvas_h: int, canvas_w: int, window: Window) -> np.ndarray:
    """Pixels `window` (canvas pixels) of `image` ((h, w, 3) or (h, w) uint8) resized to
    canvas_h x canvas_w with LANCZOS: (window.h, window.w[, 3]) uint8."""
    from PIL import Image

    h, w = image.shape[:2]
    sy, sx = h / canvas_h, w / canvas_w
    box = (window.x * sx, window.y * sy, (window.x + window.w) * sx, (window.y + window.h) * sy)
    mode = "RGB" if image.ndim == 3 else "L"
    with Image.fromarray(np.ascontiguousarray(image), mode) as im:
        return np.asarray(im.resize((window.w, window.h), Image.LANCZOS, box=box), dtype=np.uint8)
