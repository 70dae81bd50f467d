"""A window of a picture's resize: the one resampler every upscale of a user's or a stage's picture uses.

Pillow's LANCZOS (a 3-lobe windowed sinc, antialiased; actors/vaeencode.py says why this filter).
`resize(box=...)` computes a window of the whole resize: each output pixel's filter is centred
where the whole image's would be and clipped at the picture's edges, not the window's, so a
picture resized window by window (tiles on the workers, bands of the output's alpha) is the same
bytes as resized whole. Pillow is the dependency here (no I/O, no model).
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
