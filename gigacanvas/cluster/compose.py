"""A composed render: the whole picture at the model's native size first, then refined to the canvas.

Denoising a canvas far beyond the model's native size from pure noise gives every tile its own
composition (the same subject repeated, no global layout). So, with `compose` (spec version 4's
default for canvases larger than the native area), a render is a chain of stages, each an
ordinary render with a store of its own:

- stage 0, the composition: a plain render of the whole picture at about the native pixel count
  with the canvas's aspect ratio (tiling/compose.py's sizes);
- stages 1 to N: each upscales the stage before in pixel space (Pillow's LANCZOS, after an upscale
  model with `--upscaler`, tile by tile on the workers: actors/vaeencode.py), encodes it with a
  tiled VAE encode spread over the workers (overlapping tiles, each with a halo, blended in tile
  order like the step loop's predictions), noises it to `strength` with the render's own seeded
  noise (tiling/noise.py, the canvas's initial noise) as diffusers' img2img pipelines do
  (`scheduler.scale_noise` at the start step), and runs the tiled step loop from that step.
  Intermediate stages double the side each time (progressive upscaling); the last is the canvas,
  in the render's own store.

On a torus (`--wrap`, from spec version 5) every stage wraps alike: the composition is a plain
render of the torus at its size, and the upscale and the encode take their pixels across the
joined edges (actors/vaeencode.py), so no stage brings an edge seam into the next.

A refinement is nothing but a store whose `noise` array holds the noised composition and whose
commit records start at the start step (storage/store.py's `start_step`): the step loop, the
reducers, resume, status and preview need nothing new.

Why `strength` 0.6 by default: the share of the schedule the refinement runs (diffusers'
`t_start = int(steps - steps * strength)`). Hires-fix and tiled-upscaling workflows use 0.3 to
0.7: below about 0.4 the refinement mostly sharpens the upscale's blur, above about 0.7 each tile
recomposes its part and the repetition the composition removed comes back. 0.6 leaves the layout
to the composition and the detail to the refinement; the tiny test model cannot say more.

Earlier stages live in the final store's `stages/` folder, each under a name made of its index,
its size and a hash of its own spec (its pixel-deciding fields, a refinement's upscale model's
fingerprint among them, its source stage's name and the model's fingerprint). A render finds a
stage it needs by that name and reuses it if finished (or resumes it), so a refinement with
another strength or upscaler reuses the composition, and `--overwrite` replaces only the final
stage, never a stage another spec could still use.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.cluster.regions import scale_feather, scale_regions
from gigacanvas.cluster.spec import RenderSpec
from gigacanvas.errors import UsageError
from gigacanvas.storage.store import STAGES
from gigacanvas.tiling import TileBlender, noise_window, plan_tiles
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.compose import stage_sizes, start_step

ENCODE_OVERLAP_FRACTION = 4  # encode tiles overlap by a quarter of the tile, as the blend decode's
ENCODE_HALO_FRACTION = 8  # and each is encoded with an eighth of the tile more on every side (see vae_encode.py)


@dataclass(frozen=True)
class Stage:
    """One earlier stage of a composed render: its own spec (size, store) and what its store records."""

    index: int  # 0: the composition
    spec: RenderSpec
    content: dict
    name: str  # its folder under the final store's stages/

    @property
    def start(self) -> int:
        return start_of(self.spec) if self.index else 0


def start_of(spec: RenderSpec) -> int:
    """The step a refinement of this (resolved) spec starts at (a composed render's last stage, or
    an upscale: cluster/upscale.py); 0 for a plain render."""
    return start_step(spec.steps, spec.strength) if spec.stages or spec.source else 0


def sizes(spec: RenderSpec, info: ModelInfo) -> tuple[tuple[int, int], ...]:
    """Every stage's (width, height), the canvas last; one line (UsageError) when they do not fit."""
    try:
        return stage_sizes(spec.width, spec.height, info.native_tile_px, info.align_px, spec.stages)
    except ValueError as exc:
        raise UsageError(f"compose {spec.compose}: {exc}; pass a smaller --compose or --compose none") from None


def _name(index: int, width: int, height: int, content: dict, fingerprint: str) -> str:
    text = json.dumps({"spec": content, "fingerprint": fingerprint}, sort_keys=True)
    return f"{index}-{width}x{height}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def plan_stages(spec: RenderSpec, info: ModelInfo) -> tuple[Stage, ...]:
    """The stages before the canvas's (none for a plain render), for a resolved spec."""
    if not spec.stages:
        return ()
    stages: list[Stage] = []
    for index, (width, height) in enumerate(sizes(spec, info)[:-1]):
        # regional prompts apply at every stage, scaled: the composition is where the layout is decided
        size = {
            "width": width, "height": height,
            "regions": scale_regions(spec.regions, spec.width, spec.height, width, height),
            "region_feather": scale_feather(spec.region_feather, spec.width, spec.height, width, height),
        }
        if index == 0:  # a plain render at that size: the same spec and store content as one
            # no upscaler either: it upscales the refinements' pictures, and the composition is one's source
            own = spec.replace(**size, compose="none", strength=None, preview=None, upscaler=None, upscaler_fingerprint=None)
            content = own.content()
        else:
            own = spec.replace(**size, preview=None)
            content = {**own.content(), "stage": index, "source": stages[-1].name}
        name = _name(index, width, height, content, info.fingerprint)
        url = f"{spec.store_url.rstrip('/')}/{STAGES}/{name}"
        stages.append(Stage(index, own.replace(store=url), content, name))
    return tuple(stages)


def describe(spec: RenderSpec, info: ModelInfo) -> str:
    """'composition 368x176 px, then 1024x512 px from step 1 of 4 (strength 0.6)', or 'none'."""
    if spec.source:
        return f"none: an upscale of {spec.image}, refined from step {start_of(spec)} of {spec.steps} (strength {spec.strength:g})"
    if not spec.stages:
        return "none"
    shown = sizes(spec, info)
    then = ", ".join(f"{w}x{h} px" for w, h in shown[1:])
    return (
        f"composition {shown[0][0]}x{shown[0][1]} px, then {then}, each from step {start_of(spec)} "
        f"of {spec.steps} (strength {spec.strength:g})"
    )


def noised(latent: np.ndarray, noise: np.ndarray, scheduler: Any, start: int) -> np.ndarray:
    """`latent` noised to the scheduler's level at step `start`, as diffusers' img2img pipelines do
    (`scale_noise` for flow matching: sigma * noise + (1 - sigma) * latent; `add_noise` otherwise)."""
    import torch

    scheduler = copy.deepcopy(scheduler)
    if hasattr(scheduler, "set_begin_index"):  # as the img2img pipelines; DDIM's add_noise reads t alone
        scheduler.set_begin_index(start)
    t = scheduler.timesteps[start : start + 1]
    x, n = torch.from_numpy(latent)[None], torch.from_numpy(noise)[None]
    out = scheduler.scale_noise(x, t, n) if hasattr(scheduler, "scale_noise") else scheduler.add_noise(x, n, t)
    return np.ascontiguousarray(out[0].numpy(), dtype=np.float32)


def encode_grid(lat_h: int, lat_w: int, tile: int, wrap: tuple[bool, bool] = (False, False)):
    """(TileGrid, halo) of the tiled encode of a lat_h x lat_w latent, in latent pixels; `tile` 0:
    one piece (the whole encode, no halo). Along a wrapped axis (`wrap`: rows, columns) the tiles
    are spaced around the torus, the last crossing the edge (tiling/grid.py's `torus_axis`)."""
    tile = tile or max(lat_h, lat_w)
    overlap = tile // ENCODE_OVERLAP_FRACTION if tile < max(lat_h, lat_w) else 0
    grid = plan_tiles(lat_h, lat_w, tile, overlap, *wrap)
    return grid, (tile // ENCODE_HALO_FRACTION if len(grid) > 1 else 0)


def encode_canvas(
    pool: Any, image: np.ndarray, width: int, height: int, info: ModelInfo, tile_px: int,
    on_tile: Callable[[], None] = lambda: None, wrap: tuple[bool, bool] = (False, False),
    put: Callable[[np.ndarray], Any] | None = None, upscaler: tuple[str, str] | None = None,
) -> np.ndarray:
    """The latent of `image` ((h, w, 3) uint8) upscaled to width x height px, whole: (C, height / f,
    width / f) float32 (`encoded_rows` asked for every row; see there)."""
    rows = encoded_rows(pool, image, width, height, info, tile_px, on_tile, wrap, put, upscaler)
    return rows(0, height // info.vae_scale_factor)


def encoded_rows(
    pool: Any, image: np.ndarray, width: int, height: int, info: ModelInfo, tile_px: int,
    on_tile: Callable[[], None] = lambda: None, wrap: tuple[bool, bool] = (False, False),
    put: Callable[[np.ndarray], Any] | None = None, upscaler: tuple[str, str] | None = None,
) -> Callable[[int, int], np.ndarray]:
    """Rows [y0, y1) of the latent of `image` ((h, w, 3) uint8) upscaled to width x height px, as a
    function to be asked for row ranges from the top down (the store's `write_noise` asks so): each
    call encodes, on the pool's workers, the tiles of `tile_px` (0: one piece) that reach its rows
    and were not encoded yet, blends them in tile order (the same bits on any number of actors, and
    the same bits as one blend of the whole latent: each pixel folds the same tiles in the same
    order) and drops the tiles no later row needs. So the driver holds a range's blend and a row of
    tiles, never the canvas's latent (512 MiB as float64 at 16384 px). On a torus along `wrap`'s
    axes (rows, columns: actors/vaeencode.py); with `upscaler` ((path, fingerprint) of an upscale
    model) upscaled by it before LANCZOS. `put` hands the picture to the workers (Ray's object
    store; a test's pool of plain workers takes the array itself). Returns (C, y1 - y0, width / f)
    float32."""
    from gigacanvas.tiling.bands import tile_rows_in_band

    if put is None:
        import ray

        put = ray.put
    f = info.vae_scale_factor
    lat_h = height // f
    grid, halo = encode_grid(lat_h, width // f, tile_px // f, wrap)
    image_ref = put(np.ascontiguousarray(image))
    windows = grid.windows
    extra = {"wrap": wrap} if any(wrap) else {}  # a plain encode's call as before wrap existed
    if upscaler is not None:
        extra["upscaler"] = upscaler
    torus_h = lat_h if wrap[0] else None
    encoded: dict[int, np.ndarray] = {}  # tiles a later range still needs

    def submit(worker: Any, index: int) -> Any:
        return worker.encode_tile.remote(image_ref, (height, width), windows[index], halo, **extra)

    def done(index: int, latent: np.ndarray) -> None:
        encoded[index] = latent
        on_tile()

    def rows(y0: int, y1: int) -> np.ndarray:
        blender = TileBlender(grid, info.latent_channels, rows=(y0, y1))
        pool.map([i for i in blender.tiles if i not in encoded], submit, done)
        for index in blender.tiles:
            blender.add(index, encoded[index])
        for index in list(encoded):
            if y1 >= lat_h or tile_rows_in_band(windows[index], y1, lat_h, torus_h) is None:
                del encoded[index]
        return blender.result()

    return rows


def start_latent(
    pool: Any, image: np.ndarray, spec: RenderSpec, info: ModelInfo, scheduler: Any, on_tile=lambda: None,
    upscaler: tuple[str, str] | None = None,
) -> Callable[[int, int], np.ndarray]:
    """A refinement's first latent, as a function of a row range [y0, y1) (asked from the top down,
    as the store's `write_noise` asks): `image` ((h, w, 3) uint8: the stage before's picture, or an
    upscale's source) upscaled, encoded and noised to `spec.strength` with the render's own seeded
    noise (the canvas's initial noise, drawn for those rows alone: tiling/noise.py); by the spec's
    upscale model if it names one (`upscaler`: (the planned file, its fingerprint), from plan.py's
    `with_upscaler`)."""
    f, channels = info.vae_scale_factor, info.latent_channels
    encode = encoded_rows(
        pool, image, spec.width, spec.height, info, spec.vae_tile_size, on_tile, (spec.wrap_y, spec.wrap_x),
        upscaler=upscaler,
    )
    start = start_of(spec)

    def rows(y0: int, y1: int) -> np.ndarray:
        noise = noise_window(spec.seed, channels, Window(y0, 0, y1 - y0, spec.width // f))
        return noised(encode(y0, y1), noise, scheduler, start)

    return rows
