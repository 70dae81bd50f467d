"""`render(spec)`: the whole job, from a validated spec to a written picture.

Order matters for the promises made to users: everything that can be refused (model, sizes,
store, output path, cluster capacity) is checked before any actor starts or any file is written;
the store is created or resumed before work begins, so an interruption always leaves something to
resume; the picture is written last, atomically.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.actors.loading import check_weights_precision, open_model
from gigacanvas.actors.precision import resolve_precision
from gigacanvas.cluster import placement
from gigacanvas.cluster.decode import decode_latent, to_uint8
from gigacanvas.cluster.spec import RenderSpec
from gigacanvas.cluster.steploop import denoise
from gigacanvas.errors import UsageError
from gigacanvas.storage import LatentStore, read_png_spec, write_png
from gigacanvas.tiling import initial_noise, plan_tiles


@dataclass(frozen=True)
class RenderResult:
    """Where the render went and how fast it ran."""

    out: str
    store: str
    width: int
    height: int
    steps: int
    steps_run: int
    tiles_per_step: int
    actors: int
    precision: str
    seconds: float
    denoise_seconds: float
    decode_seconds: float

    @property
    def seconds_per_step(self) -> float:
        return self.denoise_seconds / self.steps_run if self.steps_run else 0.0

    @property
    def tiles_per_second(self) -> float:
        tiles = self.steps_run * self.tiles_per_step
        return tiles / self.denoise_seconds if self.denoise_seconds else 0.0

    def summary(self) -> str:
        return (
            f"gigacanvas: {self.width}x{self.height}, {self.steps} steps, {self.tiles_per_step} tiles "
            f"on {self.actors} actor(s) in {self.precision}: {self.seconds_per_step:.2f} s/step, "
            f"{self.tiles_per_second:.1f} tiles/s, decode {self.decode_seconds:.1f} s, "
            f"total {self.seconds:.1f} s -> {self.out}"
        )


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve(spec: RenderSpec, info: ModelInfo) -> RenderSpec:
    """Fill the model-dependent defaults and check sizes against the model's alignment."""
    align = info.align_px
    for name in ("width", "height", "tile_size", "vae_tile_size"):
        value = getattr(spec, name)
        if value and value % align:
            raise UsageError(f"{name} {value} is not a multiple of {align} for this model; try {-(-value // align) * align}")
    tile = spec.tile_size or info.native_tile_px
    default_overlap = tile // 8 // 8 * 8  # an eighth of the tile, in whole VAE cells
    overlap = spec.tile_overlap if spec.tile_overlap is not None else default_overlap
    if overlap % info.vae_scale_factor:
        raise UsageError(f"tile_overlap {overlap} is not a multiple of {info.vae_scale_factor} for this model")
    if overlap >= tile:
        raise UsageError(f"tile_overlap {overlap} must be smaller than tile_size {tile}; try {default_overlap}")
    vae_tile = info.native_tile_px if spec.vae_tile_size is None else spec.vae_tile_size
    return spec.replace(tile_size=tile, tile_overlap=overlap, vae_tile_size=vae_tile)


def _check_output(spec: RenderSpec) -> None:
    out = Path(spec.out)
    if not out.parent.is_dir():
        raise UsageError(f"out {spec.out}: folder {out.parent} does not exist")
    if out.exists() and not spec.overwrite:
        try:
            theirs = read_png_spec(out)
            ours = {**spec.content(), "model": spec.model, "base_model": spec.base_model}
            same = all(theirs.get(k) == v for k, v in ours.items())
        except UsageError:
            same = False
        if not same:
            raise UsageError(f"out {spec.out} exists and holds another picture; pass --overwrite or another --out")


def _open_store(spec: RenderSpec, info: ModelInfo) -> tuple[LatentStore, bool]:
    """The store for `spec`: (store, resumable). Refuses a store of another render."""
    store = LatentStore(spec.store_url)
    if store.exists() and not spec.overwrite:
        attrs = store.attrs()
        ours = {"spec": spec.content(), "fingerprint": info.fingerprint}
        theirs = {"spec": attrs.get("spec"), "fingerprint": attrs.get("fingerprint")}
        if ours != theirs:
            diff = sorted(k for k in ours["spec"] if ours["spec"][k] != (theirs["spec"] or {}).get(k))
            if ours["fingerprint"] != theirs["fingerprint"]:
                diff.append("model")
            raise UsageError(
                f"store {spec.store_url} holds a render of another spec (differs in {', '.join(diff)}); "
                "pass --overwrite to replace it or --store for a new one"
            )
        return store, True
    return store, False


def _check_resumed_precision(store: LatentStore, spec: RenderSpec, mode: str) -> None:
    theirs = store.attrs().get("precision")
    if theirs != mode:
        raise UsageError(
            f"store {spec.store_url} was rendered in {theirs} but --precision {spec.precision} runs {mode} here; "
            f"pass --precision {theirs} to resume it, or --overwrite"
        )


def render(spec: RenderSpec, progress: bool = True, notify: Callable[[str], None] = _stderr) -> RenderResult:
    """Render `spec` and write its picture; returns paths and timings.

    Usable from a notebook or a Ray job: it joins the Ray cluster that is already initialised, or
    the one at `spec.address` / RAY_ADDRESS, or starts a local one. Nothing is written until the
    model, sizes, store, output, cluster capacity and precision have all been accepted.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if spec.model is None:
        notify("gigacanvas: no --model given; using the built-in tiny random-weight SD3.5-layout model (its pictures are noise)")
    info = open_model(spec.model, spec.base_model)
    spec = resolve(spec, info)
    _check_output(spec)
    lat_h, lat_w = spec.height // info.vae_scale_factor, spec.width // info.vae_scale_factor
    grid = plan_tiles(lat_h, lat_w, spec.tile_size // info.vae_scale_factor, spec.tile_overlap // info.vae_scale_factor)
    store, resumable = _open_store(spec, info)

    placement.connect(spec.address)
    count, shape = placement.plan_shape(spec.actors, spec.cpus_per_actor)
    workers, caps = placement.start_workers(info, count, shape)
    try:
        import ray

        mode, note = resolve_precision(spec.precision, caps, spec.strict_precision)
        weights_note = check_weights_precision(info, mode, spec.strict_precision)
        for line in (note, weights_note):
            if line:
                notify(line)
        if resumable:
            _check_resumed_precision(store, spec, mode)
        placement.load_workers(workers, mode)
        if resumable:
            notify(f"gigacanvas: resuming {spec.store_url} at step {store.read_latent()[1]} of {spec.steps}")
        else:
            store.create(spec.content(), info.fingerprint, info.latent_channels, lat_h, lat_w, info.vae_scale_factor)
            store.set_attrs(precision=mode)
            store.write_noise(initial_noise(spec.seed, info.latent_channels, lat_h, lat_w))

        disable = None if progress else True
        t0 = time.perf_counter()
        done = store.read_latent()[1]
        steps_run = 0
        if done < spec.steps:
            cond = ray.put(ray.get(workers[0].encode.remote(spec.prompt, spec.negative_prompt, spec.guidance)))
            ray.get([w.set_conditioning.remote(cond) for w in workers])
            scheduler = _make_scheduler(info, spec.steps, lat_h, lat_w)
            with tqdm(total=spec.steps, initial=done, desc="steps", unit="step", disable=disable) as bar, tqdm(
                total=len(grid), desc="tiles", unit="tile", leave=False, disable=disable
            ) as tiles_bar:

                def on_step(step: int) -> None:
                    bar.update(1)
                    tiles_bar.reset()

                stats = denoise(
                    store, workers, grid, scheduler, spec.steps, spec.tile_batch, spec.guidance,
                    on_step=on_step, on_tiles=tiles_bar.update,
                )
            steps_run = stats.steps_run
        t1 = time.perf_counter()
        if not store.attrs().get("decoded"):
            latent, _ = store.read_latent()
            with tqdm(desc="decode", unit="tile", disable=disable) as bar:
                pixels = decode_latent(
                    workers, latent, info.vae_scale_factor, spec.vae_tile_size // info.vae_scale_factor,
                    on_tile=lambda: bar.update(1),
                )
            store.write_image(to_uint8(pixels))
        t2 = time.perf_counter()
    finally:
        placement.stop_workers(workers)
    write_png(spec.out, store.read_image(), spec.portable(), spec.parameters_line(mode))
    return RenderResult(
        out=spec.out,
        store=spec.store_url,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        steps_run=steps_run,
        tiles_per_step=len(grid),
        actors=count,
        precision=mode,
        seconds=time.perf_counter() - started,
        denoise_seconds=t1 - t0,
        decode_seconds=t2 - t1,
    )


def _make_scheduler(info: ModelInfo, steps: int, lat_h: int, lat_w: int):
    from gigacanvas.actors.loading import load_adapter

    # The driver builds the scheduler from config only; no weights are loaded here.
    return load_adapter(info, "cpu", "fp32").make_scheduler(steps, lat_h, lat_w)
