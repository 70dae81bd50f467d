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
- On a torus (`--wrap`), both wrap along the joined axes: the upscale treats the picture as
  periodic (tiling/resample.py), a tile crossing an edge (the encode's grid is planned around the
  torus, tiling/grid.py) and its halo take their pixels from the other side, and a tile spanning a
  wrapped axis whole is encoded with circular padding (actors/circular.py), so the start latent
  carries no seam at the join.
- With an upscale model (`--upscaler`, actors/upscaler.py), a window's pixels are the model's
  output for the crop of the picture under the window (plus `UPSCALER_CONTEXT_PX` of context),
  resized to the window at the canvas size by the same LANCZOS: the model's factor is fixed (4x,
  say) and the canvas any size, so LANCZOS finishes the job, as ComfyUI's 'Upscale Image (using
  Model)' followed by a resize does. The crops are the plan's windows', so the bytes do not depend
  on the actors either; along wrapped axes the crop is gathered modulo the picture
  (tiling/resample.py's `source_crop` and `gather`).
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.resample import gather, resize_window, source_crop

# Source pixels of real picture around each crop the upscale model sees. An ESRGAN's convolutions
# pad with zeros at the crop's edge, so its output there is not the whole picture's; 16 source px
# (64 output px at 4x) puts that edge well outside the window, where the encode's halo and the
# overlapping tiles' blend absorb what is left (an RRDB's full receptive field is wider still, and
# bounded crops are what keep each tile's cost and memory independent of the canvas). LANCZOS's
# reach on the model's output is added on top (tiling/resample.py's `source_crop`).
UPSCALER_CONTEXT_PX = 16


def upscale_window(
    image: np.ndarray, canvas_h: int, canvas_w: int, window: Window, wrap: tuple[bool, bool] = (False, False),
    upscaler=None,
) -> np.ndarray:
    """Pixels `window` (in canvas pixels) of `image` ((h, w, 3) uint8) resized to canvas_h x canvas_w
    with LANCZOS (tiling/resample.py; periodic along `wrap`'s axes), as (3, window.h, window.w)
    float32 in [-1, 1]; with `upscaler` (actors/upscaler.py's Upscaler: uint8 pixels to uint8
    pixels `scale` times larger), resized from the model's output for the window's crop instead."""
    if upscaler is None:
        out = resize_window(image, canvas_h, canvas_w, window, wrap)
    else:
        h, w = image.shape[:2]
        k = upscaler.scale
        crop = source_crop(h, w, canvas_h, canvas_w, window, UPSCALER_CONTEXT_PX, k, wrap)
        up = upscaler(gather(image, crop))
        out = resize_window(up, canvas_h, canvas_w, window, origin=(crop.y * k, crop.x * k), full=(h * k, w * k))
    out = out.astype(np.float32)
    return np.ascontiguousarray((out / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1))


def halo_window(
    window: Window, halo: int, height: int, width: int, wrap: tuple[bool, bool] = (False, False)
) -> tuple[Window, Window]:
    """`window` grown by `halo` on each side within a height x width canvas, and where `window`
    sits inside the grown one (all in the same unit). Along a wrapped axis the halo crosses the
    edge (the grown window reaches past it), unless the window spans the whole axis: it is then
    encoded with circular padding (`circular_axes`) and needs no halo there."""
    wrap_y = wrap[0] and window.h < height
    wrap_x = wrap[1] and window.w < width
    y0 = window.y - halo if wrap_y else max(0, window.y - halo)
    x0 = window.x - halo if wrap_x else max(0, window.x - halo)
    y1 = window.y + window.h + halo if wrap_y else min(height, window.y + window.h + halo)
    x1 = window.x + window.w + halo if wrap_x else min(width, window.x + window.w + halo)
    return Window(y0, x0, y1 - y0, x1 - x0), Window(window.y - y0, window.x - x0, window.h, window.w)


def circular_axes(window: Window, height: int, width: int, wrap: tuple[bool, bool]) -> tuple[bool, bool]:
    """Along which axes a window's encode pads circularly: a wrapped axis it spans whole (there the
    canvas's own edges join, as in the wrapped decode's one piece)."""
    return wrap[0] and window.h == height, wrap[1] and window.w == width


def encode_window(
    encode, image: np.ndarray, canvas: tuple[int, int], window: Window, halo: int, scale: int,
    wrap: tuple[bool, bool] = (False, False), upscaler=None,
) -> np.ndarray:
    """Latent `window` (latent pixels) of `image` upscaled to `canvas` (h, w px), encoded by
    `encode` ((1, 3, h, w) pixels and the axes to pad circularly -> (1, C, h / scale, w / scale)
    latents) with `halo` latent pixels of context on every side that the canvas has, then cut back
    to the window. On a torus (`wrap`: rows, columns) the window and its halo may cross the joined
    edges and take their pixels from the other side. `upscaler`: see `upscale_window`."""
    lat_h, lat_w = canvas[0] // scale, canvas[1] // scale
    grown, inner = halo_window(window, halo, lat_h, lat_w, wrap)
    px = Window(grown.y * scale, grown.x * scale, grown.h * scale, grown.w * scale)
    pixels = upscale_window(image, *canvas, px, wrap, upscaler)
    latent = encode(pixels[None], circular_axes(window, lat_h, lat_w, wrap))
    return np.ascontiguousarray(latent[0][(slice(None), *inner.slices)])
