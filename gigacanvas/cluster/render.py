"""`render(spec)`: the whole job, from a validated spec to a written picture.

Order matters for the promises made to users: everything that can be refused (model, sizes,
store, output path, cluster capacity) is checked before any actor starts or any file is written;
the store is created or resumed before work begins, so an interruption always leaves something to
resume; the picture is written last, atomically, from the store band by band (storage/outputs.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gigacanvas.actors.loading import check_weights_precision
from gigacanvas.actors.precision import resolve_precision
from gigacanvas.cluster import placement, signals
from gigacanvas.cluster.claim import Claim, claim_store
from gigacanvas.cluster.compose import start_latent, start_of
from gigacanvas.cluster.decode import DecodeReport, decode_into_store
from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.cluster.plan import Plan, make_scheduler, picture_spec, plan, stage_plan
from gigacanvas.cluster.progress import denoise_progress
from gigacanvas.cluster.regions import region_layout
from gigacanvas.cluster.spec import RenderSpec
from gigacanvas.cluster.steploop import (
    band_count,
    denoise,
    finish_reducers,
    load_reducers,
    spawn_reducers,
    start_noise,
    start_reducers,
)
from gigacanvas.cluster.upscaler import UnusableUpscaler, for_actors
from gigacanvas.errors import UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.outputs import write_output
from gigacanvas.tiling import Window, noise_window


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
    reducers_peak_mib: float | None = None  # the largest reducer's peak RSS; None: no steps run here
    decode: DecodeReport | None = None  # what the decode did; None: none ran here
    start_step: int = 0  # a refinement's first step (cluster/compose.py); 0: from noise
    stages: tuple[str, ...] = ()  # a composed render's earlier stages' stores, the composition first
    upscale_of: str | None = None  # an upscale's source picture (cluster/upscale.py); None: a render

    @property
    def seconds_per_step(self) -> float:
        return self.denoise_seconds / self.steps_run if self.steps_run else 0.0

    @property
    def tiles_per_second(self) -> float:
        tiles = self.steps_run * self.tiles_per_step
        return tiles / self.denoise_seconds if self.denoise_seconds else 0.0

    def summary(self) -> str:
        where = self.out if "://" in self.out else os.path.abspath(os.path.expanduser(self.out))  # from any cwd
        size = f"gigacanvas: {self.width}x{self.height}, {self.steps} steps"
        if self.stages:
            size += f" (composed in {len(self.stages)} stage(s) first, refined from step {self.start_step})"
        if self.upscale_of:
            size += f" (upscaled from {self.upscale_of}, refined from step {self.start_step})"
        if self.actors == 0:
            return f"{size} in {self.precision}, finished in its store: picture written in {self.seconds:.1f} s -> {where}"
        tiles = f"{self.tiles_per_step} tile{'s' if self.tiles_per_step != 1 else ''}"
        pace = (
            f"{self.seconds_per_step:.2f} s/step, {self.tiles_per_second:.1f} tiles/s"
            if self.steps_run else "every step was already in the store"
        )
        return (
            f"{size}, {tiles} on {self.actors} actor(s) in {self.precision}: {pace}, "
            f"decode {self.decode_seconds:.1f} s, total {self.seconds:.1f} s -> {where}"
        )


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_resumed_precision(store: LatentStore, spec: RenderSpec, mode: str) -> None:
    theirs = store.attrs().get("precision")
    if theirs != mode:
        raise UsageError(
            f"store {spec.store_url} was rendered in {theirs} but --precision {spec.precision} runs {mode} here; "
            f"pass --precision {theirs} to resume it (or, to render it again in {mode}, --overwrite with render)"
        )


def render(
    spec: RenderSpec, progress: bool = True, notify: Callable[[str], None] = _stderr, *, denoise_only: bool = False
) -> RenderResult:
    """Render `spec` and write its picture; returns paths and timings.

    Usable from a notebook or a Ray job: it joins the Ray cluster that is already initialised, or
    the one at `spec.address` / RAY_ADDRESS, or starts a local one. Nothing is written until the
    model, sizes, output, store and memory have been accepted; the store's lease is the first
    write, and a render refused after it (cluster capacity, precision) leaves nothing behind.
    `denoise_only` stops after the denoise, with no decode and no picture (`gigacanvas bench`).
    """
    started = time.perf_counter()
    if spec.model is None:
        notify("gigacanvas: no --model given; using the built-in tiny random-weight SD3.5-layout model (its pictures are noise)")
    the_plan = plan(spec)
    spec, info = the_plan.spec, the_plan.info
    for line in the_plan.notes:
        notify(line)
    claim = claim_store(spec.store_url, spec.content(), info.fingerprint, spec.overwrite)
    if claim.resumable and claim.store.protocol != "memory":
        signals.note_store(spec.store_url)  # it holds steps already: a stop during start-up must not say "nothing to resume"
    try:
        if claim.resumable and claim.store.decoded and not denoise_only:
            return _write_finished(the_plan, claim, notify, started)
        if isinstance(the_plan.upscaler, UnusableUpscaler) and not claim.resumable:
            raise the_plan.upscaler.refusal(spec.store_url)  # a store past its start needs none (cluster/upscaler.py)
        picture = None
        if spec.source is not None and not claim.resumable:  # an upscale's picture, decoded before Ray starts:
            from gigacanvas.storage.source import read_source  # damaged pixels are one line, the store unmade

            picture = read_source(spec.image, expect=spec.source)
        notify(f"gigacanvas: {placement.connect(spec.address)}")
        count, shape = placement.plan_shape(spec.actors, spec.cpus_per_actor)
        workers, caps = placement.start_workers(info, count, shape, notify)
        pool = WorkerPool(workers, notify)
        spawned: list = []
        ok = False
        try:
            bands = _band_count(the_plan, claim, len(workers))
            spawned = spawn_reducers(claim.store, bands)  # their imports overlap the model load
            mode, note = resolve_precision(spec.precision, caps, spec.strict_precision, fp8=info.weights_precision != "gguf")
            weights_note = check_weights_precision(info, mode, spec.strict_precision)
            for line in (note, weights_note):
                if line:
                    notify(line)
            if claim.resumable:
                _check_resumed_precision(claim.store, spec, mode)
            placement.load_workers(workers, mode)
            pool.replace = placement.replacer(info, shape, mode)  # a dead worker's successor
            timings = _run(the_plan, claim, pool, spawned, bands, mode, progress, notify, denoise_only, {}, picture=picture)
            ok = True
        finally:
            placement.finish_workers(pool.started, pool.alive, info, shape, ok)
            finish_reducers(claim.store, spawned, ok)
        store = claim.store
        if not denoise_only:
            write_output(spec.out, store, picture_spec(spec, info), spec.parameters_line(mode))
    finally:
        claim.release()
    steps_run, denoise_s, decode_s, reducers_peak, decoded = timings
    return RenderResult(
        out=spec.out,
        store=spec.store_url,
        width=spec.width,
        height=spec.height,
        steps=spec.steps,
        steps_run=steps_run,
        tiles_per_step=the_plan.tiles_per_step,
        actors=count,
        precision=mode,
        seconds=time.perf_counter() - started,
        denoise_seconds=denoise_s,
        decode_seconds=decode_s,
        reducers_peak_mib=reducers_peak,
        decode=decoded,
        start_step=start_of(spec),
        stages=tuple(stage.spec.store_url for stage in the_plan.stages),
        upscale_of=spec.image,
    )


def _write_finished(the_plan: Plan, claim: Claim, notify, started: float) -> RenderResult:
    """A store that already holds its picture (a render resumed after its decode, a lost PNG):
    the picture is written from it again, in the precision it was rendered in, without Ray."""
    spec, info, store = the_plan.spec, the_plan.info, claim.store
    mode = store.attrs().get("precision")
    asked = (store.attrs().get("local") or {}).get("precision")  # what its render asked, e.g. auto
    if spec.precision not in ("auto", mode, asked):  # an explicit other precision is another picture
        _check_resumed_precision(store, spec, spec.precision)
    # An export, not a new command: the store keeps the output its render recorded.
    notify(f"gigacanvas: {spec.store_url} holds the finished picture; writing it (no Ray needed)")
    write_output(spec.out, store, picture_spec(spec, info), spec.parameters_line(mode))
    return RenderResult(
        out=spec.out, store=spec.store_url, width=spec.width, height=spec.height, steps=spec.steps, steps_run=0,
        tiles_per_step=the_plan.tiles_per_step, actors=0, precision=mode, seconds=time.perf_counter() - started,
        denoise_seconds=0.0, decode_seconds=0.0,
    )


def _with_preview(spec: RenderSpec, on_step: Callable[[int], None], notify) -> tuple[Callable[[int], None], object]:
    """`on_step`, and with --preview a `Previewer` called after it (cluster/preview.py): it writes
    from a thread of its own, so the step loop never waits on a preview."""
    if spec.preview is None:
        return on_step, None
    from gigacanvas.cluster.preview import Previewer

    previewer = Previewer(spec.store_url, spec.preview, spec.preview_every, spec.steps, notify)

    def both(done: int) -> None:
        on_step(done)
        previewer.step(done)

    return both, previewer


def _encode(pool: WorkerPool, spec) -> object:
    """The prompt's conditioning, from one worker; if it dies meanwhile, from another (pool.map).
    With regions, every distinct prompt's, the base's first (actors/regional.py); a composed
    render's stages have the same prompts, scaled regions only (cluster/compose.py)."""
    encoded: dict = {}
    if spec.regions:
        _, prompts = region_layout(spec, 1)

        def call(worker, _):
            return worker.encode_prompts.remote(prompts, spec.negative_prompt, spec.guidance)
    else:
        def call(worker, _):
            return worker.encode.remote(spec.prompt, spec.negative_prompt, spec.guidance)
    pool.map(["prompt"], call, lambda _, cond: encoded.update(cond=cond))
    return encoded["cond"]


def _band_count(the_plan: Plan, claim: Claim, workers: int) -> int:
    """The reducers this render needs: the resumed store's bands (none once every step is
    committed), or a new store's, which follow from the latent and the workers."""
    if claim.resumable:
        store = claim.store
        return len(store.bands) if store.committed_step() < the_plan.spec.steps else 0
    # the reducers run on this node (a local store's disk): its cores bound how many help
    return band_count(the_plan.info.latent_channels, the_plan.lat_h, the_plan.lat_w, workers, os.cpu_count() or 1)


def _conditioning(pool: WorkerPool, spec, cond: dict) -> None:
    """The prompt's conditioning on every worker: encoded once per render, however many stages."""
    import ray

    if cond.get("ref") is None:
        cond["ref"] = ray.put(_encode(pool, spec))
        pool.set_conditioning(cond["ref"])


def _run_stages(the_plan: Plan, pool: WorkerPool, mode: str, progress: bool, notify, cond: dict) -> None:
    """A composed render's earlier stages, each in its store under the final store's stages/: found
    finished (reused), resumed, or rendered, the composition first (cluster/compose.py)."""
    info = the_plan.info
    for stage in the_plan.stages:
        spec = stage.spec
        what = "composition" if stage.index == 0 else f"stage {stage.index}"
        # overwrite: a store at this name that is not this stage's is an interrupted or damaged one of ours
        claim = claim_store(spec.store_url, stage.content, info.fingerprint, True)
        try:
            if claim.resumable and claim.store.decoded:
                notify(f"gigacanvas: {what} {spec.width}x{spec.height} px found finished in {spec.store_url}; reusing it")
                continue
            if claim.resumable:
                _check_resumed_precision(claim.store, spec, mode)
            notify(f"gigacanvas: {what} {spec.width}x{spec.height} px -> {spec.store_url}")
            splan = stage_plan(stage, info, the_plan.upscaler)
            bands = _band_count(splan, claim, len(pool.alive))
            source = the_plan.stages[stage.index - 1] if stage.index else None
            _run(splan, claim, pool, [], bands, mode, progress, notify, False, cond, stage.content, source, note=False)
        finally:
            claim.release()


def _source_image(spec: RenderSpec, store: LatentStore, stage, picture=None) -> object:
    """A refinement's source picture, (h, w, 3) uint8: the `stage` before's, or an upscale's
    `picture` (storage/source.py's Source, read by `render` before Ray started; else read here,
    checked against its recorded fingerprint; its alpha kept in the store if asked)."""
    if stage is not None:
        return LatentStore(stage.spec.store_url).read_image()
    if picture is None:
        from gigacanvas.storage.source import read_source

        picture = read_source(spec.image, expect=spec.source)
    if spec.alpha == "keep" and picture.alpha is not None:
        store.write_source_alpha(picture.alpha)  # before the initial latent: a resume needs the store alone
    return picture.rgb


def _run(
    the_plan: Plan, claim: Claim, pool: WorkerPool, spawned: list, bands: int, mode: str, progress: bool, notify,
    denoise_only: bool = False, cond: dict | None = None, content: dict | None = None, source=None, note: bool = True,
    picture=None,
) -> tuple[int, float, float, float | None, DecodeReport | None]:
    """Create or resume the store, denoise (on the `spawned` reducers, one per band), decode;
    returns (steps run, denoise s, decode s, reducers' peak MiB, the decode's report).

    A refinement (a composed render's final stage, or a `source` stage's next) starts from the
    stage before it, upscaled, encoded and noised (cluster/compose.py); `content` is what a
    stage's store records instead of its spec's content; `note`: the store is the one a stopped
    render names to resume (the final's, never a stage's)."""
    import ray
    from tqdm.auto import tqdm

    spec, info, grids = the_plan.spec, the_plan.info, the_plan.grids
    cond = {} if cond is None else cond
    store = claim.store
    # for the tile the model sees (every step's tiles are one size): a size-dependent shift is the
    # tile's; the refinement's noising uses the same schedule as its steps
    scheduler = make_scheduler(info, spec.steps, the_plan.grid.tile_h, the_plan.grid.tile_w, spec.scheduler)
    record = spec.resume_record(own_out=content is None)  # a stage's store records no out: not the final's
    if claim.resumable:
        notify(f"gigacanvas: resuming {spec.store_url} at step {store.committed_step()} of {spec.steps}")
        store.set_attrs(local=record)  # `gigacanvas resume` repeats the latest command
    else:
        if claim.replace is not None:
            store.clear(claim.replace)
        stages = {"stages": [stage.name for stage in the_plan.stages]} if the_plan.stages else {}
        store.create(
            spec.content() if content is None else content, info.fingerprint, info.latent_channels, the_plan.lat_h,
            the_plan.lat_w, info.vae_scale_factor, bands=bands, start=start_of(spec), precision=mode,
            local=record, **stages,
        )
        if note and store.protocol != "memory":
            signals.note_store(spec.store_url)  # from here a stopped render (its stages included) resumes
        if the_plan.stages:
            _run_stages(the_plan, pool, mode, progress, notify, cond)
            source = the_plan.stages[-1]
        if source is None and spec.source is None:
            # band by band: the seed's noise of any window is drawn without the rest (tiling/noise.py)
            def first(y0: int, y1: int) -> np.ndarray:
                rows = Window(y0, 0, y1 - y0, the_plan.lat_w)
                return start_noise(noise_window(spec.seed, info.latent_channels, rows), scheduler)

            store.write_noise(first)
        else:
            image = _source_image(spec, store, source, picture)
            notify(
                f"gigacanvas: upscaling {image.shape[1]}x{image.shape[0]} px to {spec.width}x{spec.height} px, "
                f"encoding, refining from step {start_of(spec)} of {spec.steps}"
            )
            with tqdm(desc="encode", unit="tile", disable=None if progress else True) as bar:
                # encoded, noised and written a chunk row at a time: the driver never holds the latent
                first = start_latent(pool, image, spec, info, scheduler, lambda: bar.update(1), for_actors(the_plan.upscaler))
                store.write_noise(first)
    # noted once: a resumable store by `render` as it claims it, a new one above once created (a
    # memory:// store dies with this process: nothing to resume)

    disable = None if progress else True
    t0 = time.perf_counter()
    done = store.committed_step()
    steps_run, reducers_peak = 0, None
    if done < spec.steps:
        # one reducer per band of the latent; they take their bands while the prompt is encoded
        reducers = start_reducers(store, grids, scheduler, info.latent_channels, spawned)
        ok = False
        try:
            _conditioning(pool, spec, cond)
            load_reducers(reducers, done)
            t0 = time.perf_counter()  # s/step counts the steps only, not the prompt encode or start-up
            with denoise_progress(spec.steps, done, the_plan.tiles_per_step, progress) as shown:
                on_step, previewer = _with_preview(spec, shown.step, notify)
                try:
                    stats = denoise(
                        store, pool, reducers, grids, scheduler, spec.steps, spec.tile_batch, spec.guidance,
                        on_step=on_step, on_tiles=shown.tiles, regions=region_layout(spec, info.vae_scale_factor)[0],
                    )
                finally:
                    if previewer is not None:
                        previewer.close()
            reducers_peak = max(ray.get([r.peak_rss_mib.remote() for r in reducers]))
            ok = True
        finally:
            finish_reducers(store, reducers, ok)
        steps_run = stats.steps_run
    t1 = time.perf_counter()
    report = None
    if not store.decoded and not denoise_only:
        with tqdm(desc="decode", unit="tile", disable=disable) as bar:
            report = decode_into_store(
                pool, store, spec.vae_tile_size // info.vae_scale_factor, spec.vae_decode, on_tile=lambda: bar.update(1),
                wrap=(spec.wrap_y, spec.wrap_x),
            )
        store.mark_decoded()
    return steps_run, t1 - t0, time.perf_counter() - t1, reducers_peak, report


