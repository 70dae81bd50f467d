"""Pure tiling math: grids, weights, blending and seeded noise. No Ray, no I/O, no model."""

from gigacanvas.tiling.blend import TileBlender
from gigacanvas.tiling.grid import TileGrid, Window, plan_axis, plan_tiles
from gigacanvas.tiling.noise import NOISE_CHUNK, initial_noise, noise_window
from gigacanvas.tiling.weights import gaussian_weights

__all__ = [
    "NOISE_CHUNK",
    "TileBlender",
    "TileGrid",
    "Window",
    "gaussian_weights",
    "initial_noise",
    "noise_window",
    "plan_axis",
    "plan_tiles",
]
