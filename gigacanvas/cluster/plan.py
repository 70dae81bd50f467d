"""Planning a render: every check and decision that needs no cluster, no actor and no write.

`plan(spec)` opens the model (configs and headers only), fills the model's defaults, and refuses
what could never work (sizes, tiles, output path, store place, memory) before `render` starts Ray,
so a refusal costs a second and leaves nothing behind. `--dry-run` prints the plan and stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.actors.loading import open_model
from gigacanvas.cluster import budget
from gigacanvas.cluster.claim import preview_store
from gigacanvas.cluster.composeplan import resolve_compose, strength_note
from gigacanvas.cluster.regions import DEFAULT_FEATHER_PX
from gigacanvas.cluster.spec import (
    DEFAULT_GUIDANCE, DEFAULT_STEPS, PICTURE_ONLY, RenderSpec, _quote, check_job_outputs, nearest_multiple,
)
from gigacanvas.cluster.upscaler import UnusableUpscaler, with_upscaler
from gigacanvas.errors import UsageError
from gigacanvas.storage.location import Location
from gigacanvas.storage.outputs import existing_output_spec, output_kind, same_place
from gigacanvas.storage.picture import local_path
from gigacanvas.tiling import TileGrid
from gigacanvas.tiling.shift import StepGrids


def resolve(spec: RenderSpec, info: ModelInfo) -> RenderSpec:
    """Fill the model-dependent defaults (steps, guidance, tiles), refuse what the model takes no
    value for, and check sizes against the model's alignment."""
    from gigacanvas.actors.ggufmodel import check_gguf_precision
    from gigacanvas.actors.loading import check_tile_size

    align = info.align_px
    for name in ("width", "height", "tile_size", "vae_tile_size"):
        value = getattr(spec, name)
        if value and value % align:
            raise UsageError(f"{name} {value} is not a multiple of {align} for this model; try {nearest_multiple(value, align)}")
    defaults = dict(info.defaults)
    for name, why in info.refused:
        value = getattr(spec, name)
        if value not in (None, "", defaults.get(name)):
            flag = name.replace("_", "-")
            raise UsageError(f"{name} {_quote(value)} is not taken by this model: {why}; leave --{flag} out")
    steps = spec.steps if spec.steps is not None else defaults.get("steps", DEFAULT_STEPS)
    guidance = spec.guidance if spec.guidance is not None else defaults.get("guidance", DEFAULT_GUIDANCE)
    tile = spec.tile_size or info.native_tile_px
    check_tile_size(info, tile)
    check_gguf_precision(info.weights_precision, spec.precision, info.transformer_file or info.path)
    shift = _default_shift(spec.spec_version) if spec.shift_windows is None else spec.shift_windows
    # Shifted windows need no overlap (benchmarks/seams.py); a fixed grid, an eighth of the tile in whole VAE cells
    default_overlap = 0 if shift else tile // 8 // 8 * 8
    overlap = spec.tile_overlap if spec.tile_overlap is not None else default_overlap
    if overlap % info.vae_scale_factor:
        raise UsageError(f"tile_overlap {overlap} is not a multiple of {info.vae_scale_factor} for this model")
    if overlap >= tile:
        raise UsageError(f"tile_overlap {overlap} must be smaller than tile_size {tile}; try {default_overlap}")
    vae_tile = info.native_tile_px if spec.vae_tile_size is None else spec.vae_tile_size
    vae_decode = spec.vae_decode or _default_decode(spec.spec_version)
    if spec.wrap and vae_decode == "blend":
        raise UsageError(
            f"wrap {spec.wrap} needs vae_decode exact or fast (spec version 1 decodes with blend); pass --vae-decode exact"
        )
    for axis, size, wrapped in (("width", spec.width, spec.wrap_x), ("height", spec.height, spec.wrap_y)):
        if wrapped and size <= tile and not shift:
            # One fixed tile spans the axis with its edges at the canvas's: the model never sees across the join.
            raise UsageError(
                f"wrap {spec.wrap} with {axis} {size} no larger than tile_size {tile} needs shifted windows; "
                "drop --shift-windows off"
            )
    compose, strength = resolve_compose(spec.replace(tile_size=tile, shift_windows=shift), info, steps)
    if spec.source is not None:
        from gigacanvas.cluster.upscale import check_canvas

        check_canvas(spec, tile)
    # the feather a picture with regions records, so a later default cannot change it
    feather = DEFAULT_FEATHER_PX if spec.regions and spec.region_feather is None else spec.region_feather
    # nothing upscaled (compose auto rendering from noise): no upscaler (cluster/upscaler.py notes it)
    upscaled = compose != "none" or spec.source is not None
    return spec.replace(
        steps=steps, guidance=guidance, tile_size=tile, tile_overlap=overlap, vae_tile_size=vae_tile,
        vae_decode=vae_decode, shift_windows=shift, compose=compose, strength=strength, region_feather=feather,
        upscaler=spec.upscaler if upscaled else None, upscaler_fingerprint=spec.upscaler_fingerprint if upscaled else None,
    )


def with_loras(spec: RenderSpec, info: ModelInfo) -> tuple[RenderSpec, ModelInfo]:
    """Check `--lora` against the model (actors/lora.py) and record what the LoRAs are: the spec's
    `lora_fingerprints` (their content and weights: part of the store's and picture's identity)
    and `info.loras` (what every actor fuses). A spec that already records LoRAs (a picture, a
    store being resumed) must be given the very same files and weights."""
    from dataclasses import replace

    from gigacanvas.actors.lora import check_loras
    from gigacanvas.cluster.lora import parse_loras, record

    files = check_loras(parse_loras(spec.lora or ()), info)
    made = record([(f.fingerprint, f.weight) for f in files])
    if spec.lora_fingerprints is not None and spec.lora_fingerprints != made:
        given = "no --lora" if made is None else f"LoRAs {made}"
        raise UsageError(
            f"this spec was made with LoRAs {_quote(spec.lora_fingerprints, 120)} (fingerprint:weight) and is given "
            f"{given}; pass --lora with the same files and weights, in the same order"
        )
    return spec.replace(lora_fingerprints=made), replace(info, loras=tuple((f.path, f.weight, f.fingerprint) for f in files))


def _default_decode(version: object) -> str:
    """Version 1 knew only the blended decode: its pictures render again as they were made."""
    return "blend" if version == 1 else "exact"


def _default_shift(version: object) -> bool:
    """Versions 1 and 2 knew only the fixed grid; version 3 shifts it every step (benchmarks/seams.py)."""
    return isinstance(version, int) and version >= 3


def step_grids(spec: RenderSpec, info: ModelInfo) -> StepGrids:
    """The tile grid of every step, for a resolved spec (sizes from pixels to latent pixels)."""
    f = info.vae_scale_factor
    return StepGrids(
        spec.height // f, spec.width // f, spec.tile_size // f, spec.tile_overlap // f,
        seed=spec.seed if spec.shift_windows else None,
        wrap_y=spec.wrap_y,
        wrap_x=spec.wrap_x,
    )


def picture_spec(spec: RenderSpec, info: ModelInfo) -> dict:
    """What the picture's spec chunk holds: the portable spec and the model's fingerprint."""
    return {**spec.portable(), PICTURE_ONLY: info.fingerprint}


def _check_regions(spec: RenderSpec, info: ModelInfo) -> None:
    """A region that reaches no latent pixel's centre would draw nothing: one line, not a silent drop."""
    from gigacanvas.cluster.regions import region_layout

    if not spec.regions:
        return
    layout, _ = region_layout(spec, info.vae_scale_factor)
    for index in layout.empty():
        r = spec.regions[index]
        f = info.vae_scale_factor
        raise UsageError(
            f"region {index + 1} ({r.x},{r.y},{r.w},{r.h}) covers no latent pixel's centre (a latent pixel is {f} px): "
            f"make it at least {f} px wide and high, or give it a --region-feather"
        )


def _check_output(spec: RenderSpec, info: ModelInfo) -> None:
    """An existing picture is replaced only if it is this render's (same spec, precision, model
    bytes) or, with --overwrite, another render's; a file that is no gigacanvas picture never is,
    nor an upscale's own picture (a gigacanvas picture upscaled in place would be lost).
    An `.ome.zarr` output that is the store itself is the claim's to judge (claim.py)."""
    if spec.image is not None and same_place(spec.out, spec.image):  # an upscale's own picture, never replaced
        raise UsageError(
            f"out {spec.out} is the picture being upscaled ({spec.image}); gigacanvas never replaces it "
            "(not even with --overwrite): pass another --out"
        )
    if output_kind(spec.out) == "ome-zarr" and same_place(spec.out, spec.store_url):
        return
    found = existing_output_spec(spec.out)
    if found is None:
        return
    theirs = {"spec_version": 1, **found}  # pictures before versions were version 1
    if theirs.get("vae_decode") is None:  # unset: the decode its version meant (as `resolve` fills it)
        theirs["vae_decode"] = _default_decode(theirs["spec_version"])
    if theirs.get("shift_windows") is None:  # likewise the grid
        theirs["shift_windows"] = _default_shift(theirs["spec_version"])
    if theirs.get("compose") == "none":  # a plain render, as pictures before version 4
        theirs["compose"] = None
    ours = {**spec.content(), "model": spec.model, "base_model": spec.base_model, "precision": spec.precision}
    ours[PICTURE_ONLY] = info.fingerprint
    ours.setdefault("compose", None)  # a composed picture is not a plain render's, nor the reverse
    ours.setdefault("strength", None)
    if not spec.overwrite and not all(theirs.get(k) == v for k, v in ours.items()):
        raise UsageError(
            f"out {spec.out} holds the picture of another render; pass another --out "
            "(or, with render, --overwrite to replace it)"
        )


def _check_preview(spec: RenderSpec) -> None:
    """`--preview` is a PNG gigacanvas could write, holding nothing or an earlier preview, and
    neither the output nor inside the store."""
    if spec.preview is None:
        return
    from gigacanvas.cluster.preview import check_preview_out

    if same_place(spec.preview, spec.out):
        raise UsageError(f"preview {spec.preview} is the output itself; pass another --preview")
    store = _local_path(spec.store_url)
    here = local_path(spec.preview)
    if store is not None and here is not None and store in here.expanduser().resolve().parents:
        raise UsageError(f"preview {spec.preview} is inside store {spec.store_url}; pass a --preview beside it")
    check_preview_out(spec.preview, "preview")


def _local_path(url: str) -> Path | None:
    """The store's folder on this machine, for any spelling of a local URL (path, file://, local://)."""
    location = Location(url)
    return Path(location.root).resolve() if location.local else None


def _check_store_place(spec: RenderSpec, info: ModelInfo) -> None:
    """The store may not be the picture (but for an `.ome.zarr` output, which is the store itself),
    hold it, or sit inside the model (whose fingerprint it would change)."""
    itself = output_kind(spec.out) == "ome-zarr" and same_place(spec.out, spec.store_url)
    if itself:
        pass
    elif spec.store_url.rstrip("/") == spec.out or spec.out.startswith(spec.store_url.rstrip("/") + "/"):
        raise UsageError(f"store {spec.store_url} and out {spec.out} overlap; pass a --store beside the picture, not at it")
    store = _local_path(spec.store_url)
    if store is None:
        return
    # A file where a folder of the store's path must be: the store could never be created (found
    # at the lease's first write, after Ray started, unless refused here).
    blocker = next((p for p in (store, *store.parents) if p.exists() or p.is_symlink()), None)
    if blocker is not None and blocker != store and not blocker.is_dir():
        raise UsageError(f"store {spec.store_url} is under {blocker}, which is a file, not a folder; pass a --store elsewhere")
    here = local_path(spec.out)
    out = here.expanduser().resolve() if here is not None else None
    if out is not None and not itself and (store == out or store in out.parents or out in store.parents):
        raise UsageError(f"store {spec.store_url} and out {spec.out} overlap; pass a --store beside the picture, not at it")
    model = Path(info.path).resolve()
    if store == model or model in store.parents:
        where = "is" if store == model else "is inside"
        raise UsageError(f"store {spec.store_url} {where} the model folder {info.path}; pass a --store elsewhere")


@dataclass(frozen=True)
class Plan:
    """Everything decided before any cluster, actor or file is touched."""

    spec: RenderSpec
    info: ModelInfo
    grids: StepGrids
    lat_h: int
    lat_w: int
    budget: budget.Budget
    store_action: str  # what the render would do with the store: create, resume at step N, replace
    stages: tuple = ()  # a composed render's earlier stages (cluster/compose.py's Stage), the composition first
    notes: tuple[str, ...] = ()  # lines the user should read before the render starts (a flag without effect)
    upscaler: object = None  # the checked upscale model (actors/upscaler.py's UpscalerFile), or None

    @property
    def grid(self) -> TileGrid:
        """The first step's grid (every step's, unless the windows shift)."""
        return self.grids.grid(0)

    @property
    def tiles_per_step(self) -> int:
        """Tiles per step, the mean over the steps where the windows shift (whose counts differ by a row or column)."""
        if not self.grids.shifted:
            return len(self.grid)
        return round(sum(len(self.grids.grid(s)) for s in range(self.spec.steps)) / self.spec.steps)

    def _tiles(self) -> str:
        """'6 per step of 256 px', or with windows that move '6-8 per step of 256 px, shifted every step'."""
        grids = [self.grids.grid(s) for s in range(self.spec.steps)] if self.grids.shifted else [self.grid]
        low, high = min(map(len, grids)), max(map(len, grids))
        moving = any(g != grids[0] for g in grids)
        wrap = f", wrapping around {self.spec.wrap}" if self.spec.wrap else ""
        return f"{low}{'' if low == high else f'-{high}'} per step of {self._tile_px()} px" + (", shifted every step" if moving else "") + wrap

    def _regions(self) -> str:
        """'2 (3 prompts with the base), feather 64 px: 11 model calls' worth of tiles for the first
        step's 8': what the regions cost (a tile predicts once per prompt it touches)."""
        from gigacanvas.cluster.regions import region_layout

        layout, prompts = region_layout(self.spec, self.info.vae_scale_factor)
        predictions = sum(len(layout.touches(w)) for w in self.grid.windows)
        return (
            f"{len(self.spec.regions)} ({len(prompts)} prompt{'s' if len(prompts) > 1 else ''} with the base), feather {self.spec.region_feather} px: "
            f"{predictions} tile predictions for the first step's {len(self.grid)} tiles"
        )

    def _tile_px(self) -> str:
        """The tile as planned: a canvas smaller than the tile gets one tile the canvas's size."""
        first = self.grid.windows[0]
        f = self.info.vae_scale_factor
        return f"{first.w * f}x{first.h * f}" if first.w != first.h else f"{first.w * f}"

    def describe(self) -> str:
        from gigacanvas.cluster import compose

        spec, info = self.spec, self.info
        model = spec.model or "the built-in tiny model"
        scheduler = spec.scheduler or "the model folder's own"
        return "\n".join(
            [
                f"gigacanvas: plan for {spec.width}x{spec.height} px ({self.lat_w}x{self.lat_h} latent), {spec.steps} steps, seed {spec.seed}",
                f"  model: {model} (fingerprint {info.fingerprint})",
                *[f"  lora: {path} at {weight:g} (fingerprint {fp})" for path, weight, fp in info.loras],
                f"  scheduler: {scheduler}",
                f"  tiles: {self._tiles()}, overlap {spec.tile_overlap} px, batch {spec.tile_batch}",
                f"  compose: {compose.describe(spec, info)}",
                *([f"  upscaler: {self.upscaler.describe()}"] if self.upscaler else []),
                *([f"  regions: {self._regions()}"] if spec.regions else []),
                f"  decode: {spec.vae_decode}, " + (f"tiles of {spec.vae_tile_size} px" if spec.vae_tile_size else "in one piece"),
                f"  precision: {spec.precision}; actors: {spec.actors or 'one per GPU, or 2 on CPUs'}",
                f"  memory: {self.budget.describe()}",
                f"  store: {spec.store_url} ({self.store_action})",
                f"  out: {spec.out}",
                *([f"  preview: {spec.preview} every {spec.preview_every} step(s)"] if spec.preview else []),
                *(f"  {note.removeprefix('gigacanvas: ')}" for note in self.notes),
            ]
        )


def plan(spec: RenderSpec) -> Plan:
    """Every check that needs no cluster: model and configs, sizes, output, store place, memory."""
    check_job_outputs(spec)  # before the model opens: a refusal in a Ray job costs nothing
    info = open_model(spec.model, spec.base_model, spec.scheduler)
    spec, info = with_loras(spec, info)
    asked, spec = spec, resolve(spec, info)
    spec, upscaler, unused = with_upscaler(asked, spec)
    notes = tuple(n for n in (strength_note(asked, spec, info), unused) if n)
    _check_regions(spec, info)
    _check_output(spec, info)
    _check_store_place(spec, info)
    _check_preview(spec)
    lat_h, lat_w = spec.height // info.vae_scale_factor, spec.width // info.vae_scale_factor
    need = budget.estimate(info.latent_channels, lat_h, lat_w, info.vae_scale_factor, spec.vae_decode)
    have = budget.machine_memory()
    if need.driver_bytes > have:
        raise UsageError(
            f"a {spec.width}x{spec.height} canvas needs about {need.driver_bytes / budget.GIB:.1f} GiB on the driver "
            f"but this machine has {have / budget.GIB:.1f} GiB; render a smaller canvas"
        )
    action = preview_store(spec.store_url, spec.content(), info.fingerprint, spec.overwrite)
    if isinstance(upscaler, UnusableUpscaler) and not action.startswith("resume"):
        raise upscaler.refusal(spec.store_url)  # only a store past its first latent does without it
    from gigacanvas.cluster.compose import plan_stages

    return Plan(spec, info, step_grids(spec, info), lat_h, lat_w, need, action, plan_stages(spec, info), notes, upscaler)


def stage_plan(stage, info: ModelInfo, upscaler=None) -> Plan:
    """The plan of an earlier stage of a composed render: its own size and store, no output of its
    own; a refinement stage upscales with the render's `upscaler` (the composition upscales nothing)."""
    spec = stage.spec
    lat_h, lat_w = spec.height // info.vae_scale_factor, spec.width // info.vae_scale_factor
    need = budget.estimate(info.latent_channels, lat_h, lat_w, info.vae_scale_factor, spec.vae_decode)
    upscaler = upscaler if spec.upscaler_fingerprint else None
    return Plan(spec, info, step_grids(spec, info), lat_h, lat_w, need, f"stage {stage.index}", upscaler=upscaler)


def make_scheduler(info: ModelInfo, steps: int, tile_h: int, tile_w: int, scheduler: str | None = None):
    """The render's scheduler, for the `tile_h` x `tile_w` (latent pixels) tiles the model sees:
    the model's own, or the class `scheduler` names (the spec's, checked by `open_model`)."""
    from gigacanvas.actors.loading import load_adapter

    # The driver builds the scheduler from config only; no weights are loaded here.
    return load_adapter(info, "cpu", "fp32").make_scheduler(steps, tile_h, tile_w, scheduler)
