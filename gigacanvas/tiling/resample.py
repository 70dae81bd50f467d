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

With an upscale model (`--upscaler`, actors/vaeencode.py), a window is resized from the model's
output for a crop of the picture rather than from the picture: `source_crop` says which source
pixels a window needs (those under it, plus the model's context and the filter's reach, gathered
modulo the picture along wrapped axes by `gather`), and `resize_window`'s `origin` and `full` place
the crop's model output in the whole upscaled picture it stands for, so the filter is centred as
the whole's resize would centre it (Pillow's resize of a crop with its box shifted is not bit for bit
the whole's either, up to a few dozen levels on random noise: the crops too are fixed by the plan).
"""

from __future__ import annotations

import math

import numpy as np

from gigacanvas.tiling.grid import Window

LANCZOS_SUPPORT = 3.0  # Pillow's LANCZOS reaches 3 source pixels each side (times the scale when it shrinks)


def resize_window(
    image: np.ndarray, canvas_h: int, canvas_w: int, window: Window, wrap: tuple[bool, bool] = (False, False),
    origin: tuple[int, int] = (0, 0), full: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pixels `window` (canvas pixels) of `image` ((h, w, 3) or (h, w) uint8) resized to
    canvas_h x canvas_w with LANCZOS: (window.h, window.w[, 3]) uint8.

    Along a wrapped axis (`wrap`: rows, columns) the picture is periodic: the window may reach
    past either edge (it continues at the other), and the filter near an edge takes its source
    pixels from across it instead of clamping, so the upscale of a torus has no seam at the join.
    An unwrapped axis is resized exactly as before wrap existed.

    `image` may be a part of a larger picture of `full` (h, w) pixels whose pixel (0, 0) sits at
    `origin` (y, x) there (a crop, gathered modulo the picture where it wraps: `source_crop`): the
    window is then that picture's, and the part must hold it and the filter's reach (`wrap` is
    for a whole picture only: a gathered crop carries its reach already)."""
    from PIL import Image

    h, w = image.shape[:2] if full is None else full
    sy, sx = h / canvas_h, w / canvas_w
    x0, y0, x1, y1 = window.x * sx, window.y * sy, (window.x + window.w) * sx, (window.y + window.h) * sy
    x0, x1, y0, y1 = x0 - origin[1], x1 - origin[1], y0 - origin[0], y1 - origin[0]
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


def source_crop(
    src_h: int, src_w: int, canvas_h: int, canvas_w: int, window: Window, context: int, factor: int,
    wrap: tuple[bool, bool] = (False, False),
) -> Window:
    """The source pixels (a Window in source pixels) that `window` (canvas pixels) of a
    src_h x src_w picture upscaled by a model of `factor`, then resized to canvas_h x canvas_w, needs:
    those under the window, plus `context` source pixels each side (the model's receptive field:
    what it sees past the window changes its output near the window's edge), plus the reach of
    LANCZOS's filter on the model's output, in source pixels. Clamped to the picture along an
    unwrapped axis (there the whole picture's edge is the crop's, and both clamp alike); along a
    wrapped one it may reach past either edge, to be gathered modulo the picture (`gather`)."""
    spans = []
    for start, size, src, canvas, wrapped in (
        (window.y, window.h, src_h, canvas_h, wrap[0]), (window.x, window.w, src_w, canvas_w, wrap[1]),
    ):
        scale = src / canvas  # source pixels per canvas pixel
        reach = math.ceil(LANCZOS_SUPPORT * max(1.0, scale * factor) / factor) + 1  # output px -> source px
        lo = math.floor(start * scale) - context - reach
        hi = math.ceil((start + size) * scale) + context + reach
        spans.append((lo, hi) if wrapped else (max(0, lo), min(src, hi)))
    (y0, y1), (x0, x1) = spans
    return Window(y0, x0, y1 - y0, x1 - x0)


def gather(image: np.ndarray, crop: Window) -> np.ndarray:
    """The pixels of `crop` (source pixels; it may reach past the edges, see `source_crop`) of
    `image` ((h, w, ...)), taken modulo the picture: a periodic picture's crop."""
    rows = np.arange(crop.y, crop.y + crop.h) % image.shape[0]
    cols = np.arange(crop.x, crop.x + crop.w) % image.shape[1]
    return np.ascontiguousarray(image[rows][:, cols])
