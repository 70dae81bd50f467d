"""The VAE decode, spread over the same worker actors that denoised, written into the store.

`exact` (the default from spec version 2): the seamless decode of actors/vaedecode.py. One worker
runs the head (conv_in and the mid-block, whose attention is global) on the whole latent, which
it receives as the store's row bands; its output stays in Ray's object store, owned by the driver
so it outlives the worker that made it. The tail then runs in tiles whose cores partition the
canvas: one pass per GroupNorm gathers that layer's moments over every core, merged in tile order
(tiling/groupstats.py), and a last pass decodes every core with all statistics known. After each
up-block's GroupNorms are known, a pass keeps every core's activations at the block's end in the
object store (a checkpoint, driver-owned like the head, where it fits CHECKPOINT_BUDGET) and the
next block's passes start from them, pasted into each tile's window on the worker. Each core's
pixels go into the store's `image` as they arrive: the driver holds one tile at a time, never the
picture, and the result is the whole decode's to float rounding, with no blending at all.

`fast`: the first up-block's statistics exactly (a pass per GroupNorm, cheap at the latent's
resolution), then the rest estimated on one worker from a few crops spread over the canvas and
decoded together (at most `FAST_STATS_SIDE` squared latent pixels of window in all), and one pass
for the pixels (tiling/decodepasses.py's `plan_fast`).

`blend` (spec version 1, kept so older pictures render again as they were made): overlapping
tiles normalised on their own, blended in pixel space on the driver, which holds the picture.

On a torus (`--wrap`, exact and fast) the head and a one-piece decode pad their convs circularly
across the joined edges, and each tile's window takes its halo across them (tiling/decodetiles.py),
so the picture has no seam there either; `blend` refuses wrap (spec.py), its tiles being decoded
apart.

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
from gigacanvas.tiling.decodepasses import CHECKPOINT_BUDGET, SAMPLE_CORE, DecodePass, plan_fast, plan_passes
from gigacanvas.tiling.decodetiles import crop_padding, overlapping, plan_decode_tiles, sample_crops
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.groupstats import merge

VAE_OVERLAP_FRACTION = 4  # blend: overlap = a quarter of the tile, as diffusers' tiled VAE uses
FAST_STATS_SIDE = 128  # latent pixels: the fast mode's crops hold at most a 1024 px square's worth of window


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
    pool: WorkerPool,
    store: Any,
    tile_lat: int,
    mode: str,
    on_tile: Callable[[], None] = lambda: None,
    wrap: tuple[bool, bool] = (False, False),
) -> DecodeReport:
    """Decode the store's final latent into its `image`; `tile_lat` 0 decodes in one tile; `wrap`
    (rows, columns): the canvas is a torus along those axes."""
    started = time.perf_counter()
    if mode == "blend":
        if any(wrap):
            raise ValueError("the blend decode cannot wrap (spec.py refuses it)")
        return _blend(pool, store, tile_lat, on_tile, started)
    import ray

    got: dict = {}
    pool.map(["layout"], lambda worker, _: worker.decode_layout.remote(), lambda _, layout: got.update(layout=layout))
    layout = got["layout"]
    last = layout.segments - 1
    lat_h, lat_w = store.latent_shape
    canvas = Window(0, 0, lat_h, lat_w)
    torus = (lat_h if wrap[0] else None, lat_w if wrap[1] else None)

    held = [(canvas, _head(pool, store, wrap))]  # what the next pass reads: (latent window, object ref)
    head_s = time.perf_counter() - started
    known: list[np.ndarray] | None = []
    if len(plan_decode_tiles(lat_h, lat_w, tile_lat, 0)) == 1:
        known = None  # the one tile is the canvas: it normalises with its own statistics, in one call
        plan: tuple[DecodePass, ...] = (DecodePass(0, last),)
    elif mode == "fast":
        plan = plan_fast(layout, lat_h, lat_w, CHECKPOINT_BUDGET)
    else:
        plan = plan_passes(layout, lat_h, lat_w, CHECKPOINT_BUDGET)
    scale = store.scale

    for step in plan:
        if step.sample:
            known += _sample(pool, step, layout, (lat_h, lat_w), known, held, wrap)
            continue
        tiles = plan_decode_tiles(lat_h, lat_w, tile_lat, layout.halo(step.start, step.end), *wrap)
        known_ref = ray.put(known)
        answers: dict[int, Any] = {}
        windows = [w for w, _ in held]

        def submit(worker: Any, index: int, step: DecodePass = step, tiles=tiles, known_ref=known_ref, windows=windows) -> Any:
            tile = tiles[index]
            reads = overlapping(windows, tile.window, *torus)
            args = (step, tile.window, tile.core_in_window, known_ref, [windows[i] for i in reads], *(held[i][1] for i in reads))
            if step.probe is not None or step.end == last:
                return worker.decode_run.remote(*args, torus=torus)
            answers[index], shape = worker.decode_run.options(num_returns=2).remote(*args, torus=torus)
            return shape  # the pool fetches this; the checkpoint stays in the object store

        def on_done(index: int, got: Any, step: DecodePass = step, tiles=tiles) -> None:
            if step.probe is not None:
                answers[index] = got
            elif step.end == last:
                core = tiles[index].core
                store.write_image_window(core.y * scale, core.x * scale, got)
            on_tile()

        pool.map(range(len(tiles)), submit, on_done)
        if step.probe is not None:
            known.append(merge(answers[i] for i in range(len(tiles))))  # tile order: same bits on any pool
        elif step.end < last and step.keep:
            held = [(tiles[i].core, answers[i]) for i in range(len(tiles))]  # the previous checkpoint is dropped
    held = []  # the last checkpoint's refs go: the object store frees it
    seconds = time.perf_counter() - started
    return DecodeReport(mode, len(tiles), len(plan), layout.halo(0, last), head_s, seconds, _peaks(pool))


def _sample(
    pool: WorkerPool,
    step: DecodePass,
    layout: Any,
    shape: tuple[int, int],
    known: list[np.ndarray],
    held: list[tuple[Window, Any]],
    wrap: tuple[bool, bool],
) -> list[np.ndarray]:
    """The fast mode's estimate of every GroupNorm past `known`, on one worker, from the crops of
    tiling/decodetiles.py's `sample_crops` pasted from `held` (refs: the driver never holds them)."""
    lat_h, lat_w = shape
    halo = layout.halo(step.start, step.end)
    crops = sample_crops(lat_h, lat_w, SAMPLE_CORE, halo, FAST_STATS_SIDE * FAST_STATS_SIDE, *wrap)
    torus = (lat_h if wrap[0] else None, lat_w if wrap[1] else None)
    windows = [w for w, _ in held]
    reads = sorted({i for c in crops for i in overlapping(windows, c.window, *torus)})
    padding = crop_padding(crops, lat_h, lat_w, *wrap)
    got: dict = {}

    def submit(worker: Any, _: str) -> Any:
        refs = (held[i][1] for i in reads)
        return worker.decode_sample.remote(step, crops, known, padding, [windows[i] for i in reads], *refs, torus=torus)

    pool.map(["sample"], submit, lambda _, stats: got.update(stats=stats))
    return got["stats"]


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


def _head(pool: WorkerPool, store: Any, wrap: tuple[bool, bool]) -> Any:
    """The head's output as a driver-owned object ref; the latent goes to the worker in pieces of
    at most LATENT_CHUNK rows, each put in the object store and dropped here before the next is
    read. Not the store's bands: there is one per reducer, so two actors would make the driver
    read half the latent at once (128 MiB at 16384 px), and it would grow with the canvas."""
    import ray

    from gigacanvas.storage.store import LATENT_CHUNK

    step = store.committed_step()
    height = store.bands[-1][1]
    bands = []
    for y0 in range(0, height, LATENT_CHUNK):
        rows, _ = store.read_rows(y0, min(height, y0 + LATENT_CHUNK), step)
        bands.append(ray.put(rows))
        del rows
    refs: dict = {}

    def submit(worker: Any, _: str) -> Any:
        head, shape = worker.decode_head.options(num_returns=2).remote(*bands, wrap=wrap)
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
