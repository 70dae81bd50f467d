"""The composition's way back into latent space: upscale a window in pixel space, then encode it.

A refinement starts from a picture (the composition, or a smaller stage) upscaled to the canvas.
Each worker makes only its tile's window of that upscale, from the small picture it was handed,
so no process ever holds the canvas in pixels:

- Upscaling is Pillow's LANCZOS (a 3-lobe windowed sinc, antialiased): the sharpest of Pillow's
  filters without bicubic's softness or nearest's blocks, and it needs nothing beyond Pillow. The
  refinement redraws the detail any resampler lacks; what matters is that the upscale adds no
  structure of its own (no blocks or jaggies for the model to sharpen into patterns). Pillow's
  `resize(box=...)` computes the window with each output pixel's filter centred where the whole
  image's would be, though not bit for bit the whole resize's crop (tiling/resample.py): the
  windows are the plan's, so the bytes do not depend on the actors.
- Encoding is diffusers' `AutoencoderKL.encode` on the window with a halo, keeping the latent
  distribution's mean (deterministic; SD3's latent standard deviation is tiny next to the noise
  the refinement adds), scaled and shifted as SD3's img2img pipeline does. The encoder's
  GroupNorms and mid-block attention see the window only, so tiles differ slightly from a whole
  encode; the driver blends overlapping tiles (cluster/compose.py) and benchmarks/vae_encode.py
  measures the difference.
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.resample import resize_window


def upscale_window(image: np.ndarray, canvas_h: int, canvas_w: int, window: Window) -> np.ndarray:
    """Pixels `window` (in canvas pixels) of `image` ((h, w, 3) uint8) resized to canvas_h x canvas_w
    with LANCZOS (tiling/resample.py), as (3, window.h, window.w) float32 in [-1, 1]."""
    out = resize_window(image, canvas_h, canvas_w, window).astype(np.float32)
    return np.ascontiguousarray((out / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1))


def halo_window(window: Window, halo: int, height: int, width: int) -> tuple[Window, Window]:
    """`window` grown by `halo` on each side within a height x width canvas, and where `window`
    sits inside the grown one (all in the same unit)."""
    y0, x0 = max(0, window.y - halo), max(0, window.x - halo)
    y1, x1 = min(height, window.y + window.h + halo), min(width, window.x + window.w + halo)
    return Window(y0, x0, y1 - y0, x1 - x0), Window(window.y - y0, window.x - x0, window.h, window.w)


def encode_window(encode, image: np.ndarray, canvas: tuple[int, int], window: Window, halo: int, scale: int) -> np.ndarray:
    """Latent `window` (latent pixels) of `image` upscaled to `canvas` (h, w px), encoded by
    `encode` ((1, 3, h, w) pixels -> (1, C, h / scale, w / scale) latents) with `halo` latent
    pixels of context on every side that the canvas has, then cut back to the window."""
    grown, inner = halo_window(window, halo, canvas[0] // scale, canvas[1] // scale)
    pixels = upscale_window(image, *canvas, Window(grown.y * scale, grown.x * scale, grown.h * scale, grown.w * scale))
    return np.ascontiguousarray(encode(pixels[None])[0][(slice(None), *inner.slices)])
