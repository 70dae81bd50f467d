"""Latent noise drawn from the seed alone, one fixed chunk at a time.

Each `NOISE_CHUNK` x `NOISE_CHUNK` block of the latent has its own counter-based generator (Philox
keyed by the seed and the chunk's row and column), so any window of any canvas can be produced
without drawing the rest: the noise at a latent pixel depends on the seed, the channel count and
the pixel's position, never on the canvas size, the tiling or the number of actors.

The initial noise is keyed (row, column); the noise a stochastic sampler adds at step s
(`step_noise_window`) is keyed (row, column, 1, s), an independent stream of the same seed, so a
band reducer draws its rows of it without drawing the rest of the latent.
"""

from __future__ import annotations

import numpy as np

from gigacanvas.tiling.grid import Window

NOISE_CHUNK = 64


STEP_STREAM = 1  # the key's third part for a sampler's per-step noise (the initial noise has none)


def _chunk(seed: int, cy: int, cx: int, channels: int, stream: tuple[int, ...] = ()) -> np.ndarray:
    key = np.random.SeedSequence(entropy=seed, spawn_key=(cy, cx, *stream))
    rng = np.random.Generator(np.random.Philox(key))
    return rng.standard_normal((channels, NOISE_CHUNK, NOISE_CHUNK), dtype=np.float32)


def step_noise_window(seed: int, step: int, channels: int, window: Window) -> np.ndarray:
    """The noise a stochastic sampler adds to `window` at `step` (0-based), for `seed`."""
    if step < 0:
        raise ValueError(f"step {step} must be non-negative")
    return noise_window(seed, channels, window, (STEP_STREAM, step))


def noise_window(seed: int, channels: int, window: Window, stream: tuple[int, ...] = ()) -> np.ndarray:
    """The (channels, h, w) float32 standard-normal noise of `window` for `seed` (and `stream`)."""
    if seed < 0:
        raise ValueError(f"seed {seed} must be non-negative")
    out = np.empty((channels, window.h, window.w), dtype=np.float32)
    y_end, x_end = window.y + window.h, window.x + window.w
    for cy in range(window.y // NOISE_CHUNK, -(-y_end // NOISE_CHUNK)):
        for cx in range(window.x // NOISE_CHUNK, -(-x_end // NOISE_CHUNK)):
            block = _chunk(seed, cy, cx, channels, stream)
            y0, x0 = max(window.y, cy * NOISE_CHUNK), max(window.x, cx * NOISE_CHUNK)
            y1 = min(y_end, (cy + 1) * NOISE_CHUNK)
            x1 = min(x_end, (cx + 1) * NOISE_CHUNK)
            out[:, y0 - window.y : y1 - window.y, x0 - window.x : x1 - window.x] = block[
                :, y0 - cy * NOISE_CHUNK : y1 - cy * NOISE_CHUNK, x0 - cx * NOISE_CHUNK : x1 - cx * NOISE_CHUNK
            ]
    return out


def initial_noise(seed: int, channels: int, height: int, width: int) -> np.ndarray:
    """The whole (channels, height, width) latent noise of a canvas."""
    return noise_window(seed, channels, Window(0, 0, height, width))
