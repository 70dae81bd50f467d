"""The tiled VAE decode, spread over the same worker actors that denoised.

Overlapping latent tiles are decoded independently and blended in pixel space with the same
centre-weighted, tile-ordered blender as the denoiser, which hides the tiles' border artefacts.
GroupNorm statistics are still per tile here (a seamless decode with shared statistics is later
work), so very different neighbouring tiles can differ slightly in tone.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.tiling import TileBlender, plan_tiles

VAE_OVERLAP_FRACTION = 4  # overlap = a quarter of the tile, as diffusers' tiled VAE uses


def decode_latent(
    pool: WorkerPool,
    latent: np.ndarray,
    scale: int,
    tile_lat: int,
    on_tile: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """The (3, H * scale, W * scale) float32 picture in [-1, 1]; `tile_lat` 0 decodes it whole."""
    _, height, width = latent.shape
    if tile_lat == 0:
        grid = plan_tiles(height, width, max(height, width), 0)
    else:
        grid = plan_tiles(height, width, tile_lat, tile_lat // VAE_OVERLAP_FRACTION)
    windows = grid.windows
    blender = TileBlender(grid, channels=3, scale=scale)

    def submit(worker: Any, index: int) -> Any:
        return worker.decode.remote(latent[(slice(None), *windows[index].slices)][None])

    def on_done(index: int, pixels: np.ndarray) -> None:
        blender.add(index, pixels[0])
        on_tile()

    pool.map(range(len(windows)), submit, on_done)
    return blender.result()


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(3, H, W) pixels in [-1, 1] to (H, W, 3) uint8, rounding exactly as diffusers does."""
    unit = np.clip(pixels / np.float32(2) + np.float32(0.5), 0, 1)
    return np.ascontiguousarray((unit * 255).round().astype(np.uint8).transpose(1, 2, 0))
