"""The VAE decode, spread over the same worker actors that denoised, written into the store.

`exact` (the default from spec version 2): the seamless decode of actors/vaedecode.py. One worker
runs the head (conv_in and the mid-block, whose attention is global) on the whole latent, which
it receives as the store's row bands; its output stays in Ray's object store, owned by the driver
so it outlives the worker that made it. The tail then runs in tiles whose cores partition the
canvas: one pass per GroupNorm gathers that layer's moments over every core, merged in tile order
(tiling/groupstats.py), and a last pass decodes every core with all statistics known. Each core's
pixels go into the store's `image` as they arrive: the driver holds one tile at a time, never the
picture, and the result is the whole decode's to float rounding, with no blending at all.

`fast`: the same tiles and one pass, normalised with statistics estimated by one small whole
decode of the head's output subsampled (every k-th pixel) to `FAST_STATS_SIDE` latent pixels a side.

`blend` (spec version 1, kept so older pictures render again as they were made): overlapping
tiles normalised on their own, blended in pixel space on the driver, which holds the picture.

Every mode gives the same pixels whatever the number of actors: the plan, the merge order and
every tile's input depend only on the canvas and the tile size (spec.VAE_DECODES names the modes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gigacanvas.actors.vaedecode import to_uint8
from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.tiling import TileBlender, plan_tiles
from gigacanvas.tiling.decodetiles import plan_decode_tiles
from gigacanvas.tiling.groupstats import merge

VAE_OVERLAP_FRACTION = 4  # blend: overlap = a quarter of the tile, as diffusers' tiled VAE uses
FAST_STATS_SIDE = 128  # latent pixels: the fast mode's statistics decode is at most 1024 px a side


@dataclass(frozen=True)
class DecodeReport:
    """What a decode did, for the summary line and the benchmarks."""

    mode: str
    tiles: int
    passes: int
    halo: int
    head_seconds: float
    seconds: float
    peaks: tuple[dict, ...] = ()  # each worker's own peak memory per stage, MiB (actors/memwatch.py)


def decode_into_store(
    pool: WorkerPool, store: Any, tile_lat: int, mode: str, on_tile: Callable[[], None] = lambda: None
) -> DecodeReport:
    """Decode the store's final latent into its `image`; `tile_lat` 0 decodes in one tile."""
    started = time.perf_counter()
    if mode == "blend":
        return _blend(pool, store, tile_lat, on_tile, started)
    import ray

    layout: dict = {}
    pool.map(["layout"], lambda worker, _: worker.decode_layout.remote(), lambda _, got: layout.update(got=got))
    halo, norm_count = layout["got"]
    lat_h, lat_w = store.latent_shape
    tiles = plan_decode_tiles(lat_h, lat_w, tile_lat, halo)

    head = _head(pool, store)
    head_s = time.perf_counter() - started
    known: list[np.ndarray] | None = []
    passes = 1
    if len(tiles) == 1:
        known = None  # the one tile is the canvas: it normalises with its own statistics, in one call
    elif mode == "fast":
        got: dict = {}
        pool.map(["estimate"], lambda worker, _: worker.decode_estimate.remote(head, FAST_STATS_SIDE), lambda _, s: got.update(s=s))
        known = got["s"]
    else:
        for probe in range(norm_count):
            parts: dict[int, np.ndarray] = {}

            def submit(worker: Any, index: int, probe: int = probe, known_ref: Any = ray.put(known)) -> Any:
                tile = tiles[index]
                return worker.decode_tail.remote(head, tile.window, tile.core_in_window, known_ref, probe)

            def on_moments(index: int, moments: np.ndarray) -> None:
                parts[index] = moments
                on_tile()

            pool.map(range(len(tiles)), submit, on_moments)
            known.append(merge(parts[i] for i in range(len(tiles))))  # tile order: same bits on any pool
        passes += norm_count

    known_ref = ray.put(known)
    scale = store.scale

    def submit_pixels(worker: Any, index: int) -> Any:
        tile = tiles[index]
        return worker.decode_tail.remote(head, tile.window, tile.core_in_window, known_ref, None)

    def on_pixels(index: int, pixels: np.ndarray) -> None:
        core = tiles[index].core
        store.write_image_window(core.y * scale, core.x * scale, pixels)
        on_tile()

    pool.map(range(len(tiles)), submit_pixels, on_pixels)
    del head
    seconds = time.perf_counter() - started
    return DecodeReport(mode, len(tiles), passes, halo, head_s, seconds, _peaks(pool))


def _peaks(pool: WorkerPool) -> tuple[dict, ...]:
    """The live workers' peak memory per decode stage; a worker that died since reports nothing."""
    import ray

    out = []
    for worker in pool.alive:
        if not hasattr(worker, "decode_peaks"):
            continue
        try:
            out.append(ray.get(worker.decode_peaks.remote(), timeout=30))
        except (ray.exceptions.RayError, TimeoutError):  # noqa: PERF203 - a figure, not the render
            continue
    return tuple(out)


def _head(pool: WorkerPool, store: Any) -> Any:
    """The head's output as a driver-owned object ref; the latent goes to the worker band by band
    (each band put in the object store and dropped here before the next is read)."""
    import ray

    bands = []
    for y0, y1 in store.bands:
        rows, _ = store.read_rows(y0, y1)
        bands.append(ray.put(rows))
        del rows
    refs: dict = {}

    def submit(worker: Any, _: str) -> Any:
        head, shape = worker.decode_head.options(num_returns=2).remote(*bands)
        refs["head"] = head
        return shape  # the pool fetches this small answer; the head itself stays in the object store

    pool.map(["head"], submit, lambda _, shape: None)
    return refs["head"]


def _blend(pool: WorkerPool, store: Any, tile_lat: int, on_tile: Callable[[], None], started: float) -> DecodeReport:
    latent, _ = store.read_latent()
    pixels = decode_latent(pool, latent, store.scale, tile_lat, on_tile)
    store.write_image(to_uint8(pixels))
    grid_tiles = 1 if tile_lat == 0 else len(plan_tiles(*latent.shape[1:], tile_lat, tile_lat // VAE_OVERLAP_FRACTION))
    return DecodeReport("blend", grid_tiles, 1, 0, 0.0, time.perf_counter() - started)


def decode_latent(
    pool: WorkerPool,
    latent: np.ndarray,
    scale: int,
    tile_lat: int,
    on_tile: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """The `blend` decode: (3, H * scale, W * scale) float32 in [-1, 1]; `tile_lat` 0 in one piece."""
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
