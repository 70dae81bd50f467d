"""The render spec: one frozen dataclass, built from a file and flags, validated once.

Every check raises `UsageError` with one sentence naming the field, the value and a fix, before
any model, store or cluster is touched. Code past this point trusts the spec. Values may come from
a file someone else wrote, so every number is bounded, every float finite, and a message quotes a
value in a few dozen characters at most. Reading files is specfile.py's job.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigacanvas.actors.precision import MODES
from gigacanvas.cluster.regions import Region, check_regions, parse_regions
from gigacanvas.errors import UsageError
from gigacanvas.storage.outputs import check_out_name, output_kind, store_beside

ALIGN_PX = 16  # SD3: VAE factor 8 x patch 2; the model check re-validates against its own value
MAX_SEED = 2**63 - 1
# The spec's format. A picture records the version it was made with, so that a later gigacanvas can
# render an older picture the way it was made (a default or a field's meaning that changed is then
# chosen by version); a picture from a newer gigacanvas is refused rather than half-understood.
SPEC_VERSION = 5  # 2: the seamless decode (`vae_decode` exact) replaced version 1's blended tiles;
# 3: shifted windows (`shift_windows` on) replaced the fixed tile grid; 4: a canvas larger than the
# model's native area is composed first (`compose` auto; cluster/compose.py), before: none; 5: auto
# composes a wrapped canvas too (the upscale and the encode wrap), version 4 rendered it from noise.
# Regional prompts (`regions`, `region_feather`), LoRAs, `--scheduler` and `--upscaler` need no
# new version: a spec without them renders as before, and a gigacanvas that predates them refuses
# the unknown key in one line.

# Sanity bounds, far past any real render: they turn a slip (an extra zero, 1e10 in a YAML file)
# into one line here instead of a failure deep inside Ray. What a given cluster can hold is the
# memory estimate's business, not these.
MAX_INT = {
    "steps": 10_000,
    "width": 262_144,
    "height": 262_144,
    "tile_size": 16_384,
    "tile_overlap": 16_384,
    "tile_batch": 64,
    "vae_tile_size": 16_384,
    "actors": 4096,
    "preview_every": 10_000,
}
VAE_DECODES = ("exact", "fast", "blend")  # cluster/decode.py
COMPOSE_WORDS = ("auto", "none")  # or a number of refinement stages, 1 to MAX_STAGES (cluster/compose.py)
MAX_STAGES = 8  # each stage doubles the composition's side: 8 reach 256 times the native side
DEFAULT_STRENGTH = 0.6  # see cluster/compose.py for why
ALPHAS = ("keep", "drop")  # what an upscale does with its source's transparency (cluster/upscale.py)
WRAPS = ("x", "y", "xy", "none")  # the axes along which the canvas is a torus (tiling/grid.py)
MAX_PROMPT = 10_000  # characters; the text encoders read a few hundred tokens at most
MAX_NAME = 4096  # characters in a path, URL or hub id (Linux's PATH_MAX)
GUIDANCE = (0.0, 100.0)
# What `steps` and `guidance` become when neither the user nor the model's family gives a value
# (plan.py's `resolve` fills them; a picture records the value used).
DEFAULT_STEPS = 28
DEFAULT_GUIDANCE = 7.0
CPUS_PER_ACTOR = (0.01, 1024.0)  # Ray rounds resources to 1e-4 and wants whole numbers above 1
SCALARS = (str, int, float, bool, type(None))  # what a spec value may be; nothing with contents

# Fields that change the pixels: a store made for other values cannot be resumed.
CONTENT_FIELDS = (
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "steps",
    "guidance",
    "seed",
    "tile_size",
    "tile_overlap",
    "tile_batch",
    "vae_tile_size",
    "vae_decode",
    "shift_windows",
    "wrap",
    "compose",
    "strength",
    "source",
    "alpha",
    "lora_fingerprints",
    "upscaler_fingerprint",
    "scheduler",
    "regions",
    "region_feather",
    "spec_version",
)
# Content fields `content()` leaves out where their absence means what they hold (a version-1
# blend decode, a fixed grid before version 3, no wrap, the model's own scheduler, no regions), so
# stores and pictures made before the field existed still match: a record without them is whole.
OMITTABLE_FIELDS = (
    "vae_decode", "shift_windows", "wrap", "compose", "strength", "source", "alpha", "lora_fingerprints", "scheduler",
    "regions", "region_feather", "upscaler_fingerprint",
)
# Written into a picture's spec chunk beside the spec, never read back as a spec key: the model's
# content fingerprint, so a picture made by other weights at the same path is never taken for ours.
PICTURE_ONLY = "model_fingerprint"
# Fields that name places on this machine: left out of the spec a picture carries, and refused in
# a spec read from a picture (a downloaded file must not pick a folder to wipe or a cluster).
LOCAL_FIELDS = ("store", "out", "overwrite", "address", "preview", "preview_every", "image", "lora", "upscaler")
# What a store records beside `content()` (its `local` attribute, with the folder the render ran
# in) so that `gigacanvas resume --store URL` can finish the render from the URL alone. A store is
# the user's own, unlike a picture, so it may name places; `overwrite` is never recorded: a resume
# replaces nothing.
RESUME_FIELDS = (
    "model", "base_model", "precision", "strict_precision", "actors", "cpus_per_actor", "out", "address", "preview",
    "preview_every", "image", "lora", "upscaler",
)
# Set by Ray's job supervisor for a job's entrypoint process, and only there (Ray 2.60,
# dashboard/modules/job/job_supervisor.py: the job's runtime_env and metadata as JSON).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


@dataclass(frozen=True)
class RenderSpec:
    """What to render and how to spread it. Sizes are in pixels."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    steps: int | None = None  # None: the model's default (DEFAULT_STEPS unless its family has one)
    guidance: float | None = None  # None: likewise (DEFAULT_GUIDANCE)
    seed: int = 0
    model: str | None = None  # a diffusers folder, hub id or .safetensors file; None: the tiny model
    base_model: str | None = None  # with a single-file model: the folder with VAE, encoders, configs
    precision: str = "auto"  # see actors/precision.py
    strict_precision: bool = False  # fail instead of falling back to another precision
    tile_size: int | None = None  # None: the model's native size
    tile_overlap: int | None = None  # None: an eighth of the tile
    tile_batch: int = 2
    vae_tile_size: int | None = None  # None: the model's native size; 0: decode in one piece
    vae_decode: str | None = None  # exact, fast or blend (cluster/decode.py); None: by spec_version
    shift_windows: bool | None = None  # a tile grid shifted every step (tiling/shift.py); None: by spec_version
    wrap: str | None = None  # x, y or xy: a torus along those axes (a seamless texture or panorama); None: none
    # auto, none or a number of stages: compose at the native area first, then refine (cluster/compose.py);
    # None: by spec_version (auto from 4)
    compose: str | None = None
    strength: float | None = None  # how much of the schedule a refinement runs, in (0, 1]; None: DEFAULT_STRENGTH
    # An upscale's (cluster/upscale.py): `source` is the fingerprint of the picture it starts from
    # ("sha256:" of the file's bytes), `image` where that picture is (a local field), `alpha` keep
    # or drop its transparency (None: it has none); all None for a render from noise.
    source: str | None = None
    image: str | None = None
    alpha: str | None = None
    # LoRAs fused into the model (actors/lora.py): `lora` the files as given, FILE[:WEIGHT] each
    # (cluster/lora.py; a local field, like the model's path), `lora_fingerprints` what they are,
    # each file's content fingerprint and weight, filled at planning: the part that decides pixels.
    lora: tuple[str, ...] | None = None
    lora_fingerprints: str | None = None
    # An upscale model (actors/upscaler.py) that upscales a refinement's picture before LANCZOS
    # brings it to the canvas size: `upscaler` the .safetensors file as given (a local field, like
    # `lora`), `upscaler_fingerprint` its content fingerprint, filled at planning (cluster/upscaler.py).
    upscaler: str | None = None
    upscaler_fingerprint: str | None = None
    # A diffusers scheduler class (EulerAncestralDiscreteScheduler) configured from the model's
    # scheduler config, among those its family allows (actors/models/); None: the model's own.
    scheduler: str | None = None
    # Regional prompts (cluster/regions.py): rectangles in pixels, each drawn with its own prompt, the
    # base prompt drawing the rest; `region_feather` their soft edges' width in pixels (None: the
    # default, filled by plan.py's `resolve` where there are regions). () and None: none, as before.
    regions: tuple[Region, ...] = ()
    region_feather: int | None = None
    actors: int | None = None  # None: one per GPU, or 2 on a CPU-only cluster
    cpus_per_actor: float = 0.5
    store: str | None = None  # None: a .zarr folder next to `out`
    out: str = "gigacanvas.png"
    overwrite: bool = False
    address: str | None = None  # Ray cluster; None: RAY_ADDRESS or a local one
    preview: str | None = None  # a small PNG of the canvas refreshed while it renders (cluster/preview.py)
    preview_every: int = 1  # steps between two previews
    spec_version: int = SPEC_VERSION  # from a picture or spec file, never a flag; see SPEC_VERSION

    def __post_init__(self) -> None:
        if type(self.compose) is int:  # `compose: 2` in a YAML file
            if not 0 < self.compose <= MAX_STAGES:
                raise UsageError(f"compose {_quote(self.compose)} is not auto, none or a number of stages from 1 to {MAX_STAGES}")
            object.__setattr__(self, "compose", str(self.compose))
        _check_loras(self)
        object.__setattr__(self, "regions", parse_regions(self.regions, MAX_PROMPT))  # a list from a file: checked apart
        _check_types(self)
        _check_ranges(self)
        for name in ("width", "height"):
            _check_multiple(name, getattr(self, name), ALIGN_PX)
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps {_quote(self.steps)} must be at least 1")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed {_quote(self.seed)} must be between 0 and {MAX_SEED}")
        if self.tile_size is not None:
            _check_multiple("tile_size", self.tile_size, ALIGN_PX)
        if self.tile_overlap is not None:
            if self.tile_overlap < 0 or self.tile_overlap % 8:
                raise UsageError(f"tile_overlap {_quote(self.tile_overlap)} must be a non-negative multiple of 8")
            if self.tile_size is not None and self.tile_overlap >= self.tile_size:
                raise UsageError(
                    f"tile_overlap {self.tile_overlap} must be smaller than tile_size {self.tile_size}; "
                    f"try {self.tile_size // 8}"
                )
        if self.precision not in MODES:
            raise UsageError(f"precision {_quote(self.precision)} is not one of {', '.join(MODES)}")
        if self.tile_batch < 1:
            raise UsageError(f"tile_batch {_quote(self.tile_batch)} must be at least 1")
        if self.vae_tile_size is not None and self.vae_tile_size != 0:
            _check_multiple("vae_tile_size", self.vae_tile_size, ALIGN_PX)
        if self.vae_decode is not None and self.vae_decode not in VAE_DECODES:
            raise UsageError(f"vae_decode {_quote(self.vae_decode)} is not one of {', '.join(VAE_DECODES)}")
        if self.wrap is not None and self.wrap not in WRAPS:
            raise UsageError(f"wrap {_quote(self.wrap)} is not one of {', '.join(WRAPS)}")
        if self.wrap == "none":
            object.__setattr__(self, "wrap", None)  # one spelling of no wrap, so stores and pictures match
        if self.wrap and self.vae_decode == "blend":
            raise UsageError(f"wrap {self.wrap} needs vae_decode exact or fast; blend decodes its tiles apart and the seam comes back")
        _check_compose(self)
        _check_upscale(self)
        _check_upscaler(self)
        if self.scheduler is not None and not (self.scheduler.isidentifier() and self.scheduler.isascii()):
            raise UsageError(
                f"scheduler {_quote(self.scheduler)} is not a diffusers scheduler class name; "
                "e.g. FlowMatchEulerDiscreteScheduler (SD3, Flux.1) or EulerAncestralDiscreteScheduler (SDXL), or leave "
                "--scheduler out for the model's own"
            )
        check_regions(self.regions, self.width, self.height, self.region_feather)
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"actors {_quote(self.actors)} must be at least 1")
        if self.store is not None and not self.store.strip():  # an unset variable in a script, most likely
            raise UsageError(f"store {_quote(self.store)} is empty; pass a path or a URL, or leave --store out")
        check_out_name(self.out, self.width, self.height)  # the format, and PNG's size limit
        if self.preview_every < 1:
            raise UsageError(f"preview_every {_quote(self.preview_every)} must be at least 1")
        if self.preview is not None and not self.preview.lower().endswith(".png"):
            raise UsageError(f"preview {_quote(self.preview)} must end in .png (a preview is a small PNG)")

    @property
    def wrap_y(self) -> bool:
        return self.wrap is not None and "y" in self.wrap

    @property
    def wrap_x(self) -> bool:
        return self.wrap is not None and "x" in self.wrap

    @property
    def store_url(self) -> str:
        """`store`, else beside the picture (OUT.zarr), or the `.ome.zarr` output itself."""
        return self.store or store_beside(self.out)

    def content(self) -> dict[str, Any]:
        """The fields that decide the pixels (plus the model as given), for the store and PNG.

        A version-1 spec's `blend` decode is left out: version 1 had no other, and its stores and
        pictures, which lack the field, must still match; so is a fixed grid before version 3."""
        content = {name: getattr(self, name) for name in CONTENT_FIELDS}
        if self.spec_version == 1 and self.vae_decode in (None, "blend"):
            del content["vae_decode"]
        if self.spec_version < 3 and not self.shift_windows:
            del content["shift_windows"]
        if self.wrap is None:
            del content["wrap"]
        if self.compose in (None, "none"):  # a plain render, as every picture before version 4
            del content["compose"]
        for name in ("strength", "source", "alpha", "lora_fingerprints", "scheduler", "region_feather", "upscaler_fingerprint"):
            if getattr(self, name) is None:
                del content[name]
        if self.regions:  # as JSON holds them, so a store's record compares equal
            content["regions"] = [dataclasses.asdict(r) for r in self.regions]
        else:  # no regions, as every picture before them
            del content["regions"]
        return content

    @property
    def stages(self) -> int:
        """Refinement stages of a resolved spec (0: none, a plain render)."""
        return 0 if self.compose in (None, "none", "auto") else int(self.compose)

    def portable(self) -> dict[str, Any]:
        """Every field but the local paths: what a picture carries for `--spec picture.png`. No
        regions are left out, so a picture without them is what it was before they existed (and a
        gigacanvas that predates them reads it)."""
        portable = {k: v for k, v in dataclasses.asdict(self).items() if k not in LOCAL_FIELDS}
        if not self.regions:
            del portable["regions"], portable["region_feather"]  # region_feather is None then: spec checks
        if self.upscaler_fingerprint is None:  # no upscaler, as every picture before it
            del portable["upscaler_fingerprint"]
        return portable

    def resume_record(self, own_out: bool = True) -> dict[str, Any]:
        """The store's `local` attribute: RESUME_FIELDS as given, and `cwd`, the folder that
        relative paths among them (out, a model folder) are relative to. `own_out` False (a
        composed render's earlier stage, whose picture stays in its store) records no out and no
        preview: the final render's are not the stage's, and a resume of the stage's store must
        never write the stage over the final picture."""
        record = {**{name: getattr(self, name) for name in RESUME_FIELDS}, "cwd": os.getcwd()}
        if self.upscaler is None:  # a record without it, as every store's before it
            del record["upscaler"]
        return record if own_out else {**record, "out": None, "preview": None}

    def parameters_line(self, precision: str) -> str:
        """An A1111-style `parameters` text, the de facto format image tools read."""
        model = Path(self.model).name if self.model else "gigacanvas-tiny-sd3"
        return (
            f"{self.prompt}\nNegative prompt: {self.negative_prompt}\n"
            f"Steps: {self.steps}, Sampler: {self.scheduler or 'Euler (flow matching)'}, CFG scale: {self.guidance}, "
            f"Seed: {self.seed}, Size: {self.width}x{self.height}, Model: {model}, "
            f"Tile size: {self.tile_size}, Tile overlap: {self.tile_overlap}, Precision: {precision}"
        )

    def replace(self, **changes: Any) -> RenderSpec:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(RenderSpec)}


def _check_compose(spec: RenderSpec) -> None:
    """`compose` is auto, none or 1 to MAX_STAGES (one spelling each); `strength` is in (0, 1] and
    only where a refinement can use it."""
    compose = spec.compose
    if compose is not None:
        word = compose.strip().lower()
        if word.isdigit() and word.isascii():
            word = str(int(word))  # "02" is 2, so stores and pictures match
        if word not in COMPOSE_WORDS and not (word.isdigit() and word.isascii() and 1 <= int(word) <= MAX_STAGES):
            raise UsageError(
                f"compose {_quote(compose)} is not auto, none or a number of stages from 1 to {MAX_STAGES}; "
                "try auto (compose at the model's native size, then refine at the canvas's)"
            )
        object.__setattr__(spec, "compose", word)
    strength = spec.strength
    if strength is not None:
        if not 0.0 < strength <= 1.0:  # also refuses nan
            raise UsageError(
                f"strength {_quote(strength)} must be a number above 0 and at most 1 (the share of the steps a "
                f"refinement runs; 1 starts from pure noise); try {DEFAULT_STRENGTH}"
            )
        if spec.compose == "none" and spec.source is None:
            raise UsageError(
                f"strength {strength:g} has no effect with compose none (nothing is refined); "
                "drop --strength or pass --compose auto"
            )


def _check_upscale(spec: RenderSpec) -> None:
    """`source` is a fingerprint, `alpha` keep or drop, and an upscale composes nothing."""
    if spec.source is not None:
        digest = spec.source.removeprefix("sha256:")
        if not spec.source.startswith("sha256:") or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise UsageError(f"source {_quote(spec.source)} is not a picture's fingerprint (sha256: and 64 hex digits)")
        if spec.compose not in (None, "none"):
            raise UsageError(f"compose {spec.compose} does not apply to an upscale, which refines the picture given; drop --compose")
    elif spec.image is not None or spec.alpha is not None:
        raise UsageError("image and alpha belong to an upscale; run gigacanvas upscale IMAGE")
    if spec.alpha is not None and spec.alpha not in ALPHAS:
        raise UsageError(f"alpha {_quote(spec.alpha)} is not one of {', '.join(ALPHAS)}")
    if spec.alpha == "keep" and not spec.out.lower().endswith(".png"):
        raise UsageError(
            f"alpha keep writes a PNG with transparency, and out {_quote(spec.out)} is no .png; "
            "pass a .png --out, or --alpha drop for an opaque picture"
        )


def _check_upscaler(spec: RenderSpec) -> None:
    """`upscaler_fingerprint` is 16 hex digits (`file_fingerprint`'s), and an upscaler is refused
    where nothing is upscaled: a render with compose none (an upscale refines its picture: it may)."""
    fingerprint = spec.upscaler_fingerprint
    if isinstance(fingerprint, str) and not (len(fingerprint) == 16 and all(c in "0123456789abcdef" for c in fingerprint)):
        raise UsageError(
            f"upscaler_fingerprint {_quote(fingerprint)} is not an upscaler's fingerprint (16 hex digits); "
            "it is written by gigacanvas, never by hand"
        )
    if spec.upscaler is not None and spec.compose == "none" and spec.source is None:
        raise UsageError(
            f"upscaler {_quote(spec.upscaler)} has no effect with compose none (nothing is upscaled); "
            "drop --upscaler or pass --compose auto"
        )


def _check_loras(spec: RenderSpec) -> None:
    """`lora` is one FILE[:WEIGHT] text or a list of them (a spec file's `lora:` list, a store's
    record), held as a tuple; each is parsed now so a bad weight is refused before any work;
    `lora_fingerprints` has `record`'s form."""
    from gigacanvas.cluster.lora import MAX_LORAS, check_record, parse_lora

    value = spec.lora
    if isinstance(value, str):
        value = (value,)
    if value is not None:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"lora {_quote(value)} must be a list of FILE[:WEIGHT] texts")
        if len(value) > MAX_LORAS:
            raise UsageError(f"lora lists {len(value)} files; at most {MAX_LORAS} are accepted")
        for entry in value:
            if len(entry) > MAX_NAME or "\0" in entry:
                raise UsageError(f"lora {_quote(entry)} is longer than {MAX_NAME} characters or holds a NUL character")
            parse_lora(entry)
        value = tuple(value) or None
    object.__setattr__(spec, "lora", value)
    if isinstance(spec.lora_fingerprints, str):
        check_record(spec.lora_fingerprints[:MAX_NAME + 1])


def _check_multiple(name: str, value: int, step: int) -> None:
    if value < step or value % step:
        raise UsageError(f"{name} {_quote(value)} is not a positive multiple of {step}; try {nearest_multiple(value, step)}")


def nearest_multiple(value: int, step: int) -> int:
    """The multiple of `step` nearest `value` (a tie upwards: 24 is 32 for 16), never below `step`:
    what a size refused for its alignment suggests (17 is 16, not 32)."""
    return max(step, (value + step // 2) // step * step)


def _quote(value: Any, limit: int = 40) -> str:
    """`value` for a message, in at most about `limit` characters whatever it is.

    A hostile file can hold a prompt of a megabyte or a list that an alias bomb makes a billion
    items long; a message quoting it with `repr` would be as large, or never finish.
    """
    if not isinstance(value, SCALARS):
        return _kind(value)
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 120:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"  # str() refuses > 4300
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit + 2 else text[:limit] + "..."


def _kind(value: Any) -> str:
    """'a list', 'a mapping', 'a date': what a value is, without a word of its contents."""
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (bytes, bytearray)):
        return "binary data"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def not_a_single_value(value: Any) -> str | None:
    """Why `value` cannot be a spec value (the end of a sentence), or None if it can."""
    if isinstance(value, SCALARS):
        return None
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"must be a single value, not {_kind(value)}"
    return f"must be text, a number or true/false, not {_kind(value)}"


def _check_types(spec: RenderSpec) -> None:
    """Flags arrive typed; files do not. Coerce what is unambiguous, refuse the rest."""
    for name, field in FIELDS.items():
        if name in ("lora", "regions"):  # the lists: _check_loras's and parse_regions's
            continue
        value = getattr(spec, name)
        kind = str(field.type)
        if value is None:
            if "None" not in kind:
                raise UsageError(f"{name.replace('_', '-')} is missing")
            continue
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            raise UsageError(f"{name} {not_a_single_value(value)}")
        try:
            if isinstance(value, bool) != kind.startswith("bool"):  # True is an int to Python, not to us
                raise ValueError
            if kind.startswith("int"):
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif kind.startswith("float"):
                value = float(value)
            elif kind.startswith("str") and not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise UsageError(f"{name} {_quote(value)} is not a valid {kind.split(' ')[0]}") from None
        object.__setattr__(spec, name, value)


def _check_ranges(spec: RenderSpec) -> None:
    """Bounds that keep a careless or hostile value from reaching Ray, the model or a message."""
    for name, most in MAX_INT.items():
        value = getattr(spec, name)
        if value is not None and value > most:
            raise UsageError(f"{name} {_quote(value)} must be at most {most}")
    for name, (low, high), hint in (
        ("guidance", GUIDANCE, " (1 turns guidance off)"),
        ("cpus_per_actor", CPUS_PER_ACTOR, ", e.g. 0.5"),
    ):
        value = getattr(spec, name)
        if value is not None and not low <= value <= high:  # also refuses nan, which compares false with everything
            raise UsageError(f"{name} {value!r} must be a finite number from {low:g} to {high:g}{hint}")
    cpus = spec.cpus_per_actor
    if cpus > 1 and not cpus.is_integer():
        raise UsageError(
            f"cpus_per_actor {cpus!r} is above 1 and so must be a whole number (Ray's rule); "
            f"try {math.floor(cpus)} or {math.ceil(cpus)}"
        )
    for name in (
        "prompt", "negative_prompt", "model", "base_model", "store", "out", "address", "preview", "image", "source",
        "lora_fingerprints", "scheduler", "upscaler", "upscaler_fingerprint",
    ):
        value = getattr(spec, name)
        most = MAX_PROMPT if name.endswith("prompt") else MAX_NAME
        if value is not None and len(value) > most:
            raise UsageError(f"{name} is {len(value)} characters long; at most {most} are accepted")
        if value is not None and not name.endswith("prompt") and "\0" in value:
            raise UsageError(f"{name} {_quote(value)} contains a NUL character, which no path or name may hold")
    if spec.spec_version > SPEC_VERSION:
        raise UsageError(
            f"spec_version {_quote(spec.spec_version)} is newer than this gigacanvas knows (up to {SPEC_VERSION}); "
            "upgrade gigacanvas"
        )
    if spec.spec_version < 1:
        raise UsageError(f"spec_version {_quote(spec.spec_version)} must be at least 1")


def check_job_outputs(spec: RenderSpec) -> None:
    """Inside a Ray job, refuse a relative `out` or `store`: it names a folder of Ray's.

    A job's entrypoint runs in Ray's unpacked copy of its working_dir (or, without one, wherever
    the head was started), so a relative output would land there, out of the user's sight and
    deleted with Ray's cache, while the job reports success. Inputs, such as a `--model` folder
    shipped in the working_dir, may stay relative: they are read, not written.
    """
    if RAY_JOB_ENV not in os.environ:
        return
    for name, value in (("out", spec.out), ("store", spec.store), ("preview", spec.preview)):
        if value is not None and _relative_place(value):
            raise UsageError(
                f"{name} {_quote(value)} is a relative path, which in a Ray job means Ray's folder {os.getcwd()} "
                f"on the node that runs the job; pass an absolute --{name} path or a URL (s3://bucket/...)"
            )


def _relative_place(value: str) -> bool:
    """Whether `value` depends on the working folder: a relative path, or a file:// URL of one."""
    from gigacanvas.storage.location import local_url_path

    path = local_url_path(value)
    return "://" not in path and not os.path.isabs(os.path.expanduser(path))


def _normalise_keys(data: dict[Any, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_") if isinstance(key, str) else key
        if name not in FIELDS:
            valid = ", ".join(sorted(FIELDS))
            raise UsageError(f"{source}: unknown key {_quote(key)}; valid keys: {valid}")
        out[name] = value
    return out


def build_spec(spec_file: str | None = None, **flags: Any) -> RenderSpec:
    """A spec from an optional file, with every non-None flag overriding it."""
    from gigacanvas.cluster.specfile import load_spec_file

    data = load_spec_file(spec_file) if spec_file else {}
    flags = _normalise_keys({k: v for k, v in flags.items() if v is not None}, "flags")
    if "spec_version" in flags:
        raise UsageError("spec_version comes from a spec file or picture, not a flag")
    if spec_file and output_kind(spec_file) is not None:
        _check_picture_models(data, flags, spec_file)
    data.update(flags)
    if "prompt" not in data:
        raise UsageError("prompt is missing; pass --prompt or a spec file with a prompt")
    return RenderSpec(**data)


def _check_picture_models(data: dict, flags: dict, picture: str) -> None:
    """A picture may name the local model it was made with (rendering it again needs no flag), but
    not a URL or hub id: a downloaded picture must not make gigacanvas fetch anything, or try to
    (a bucket listed with the user's credentials, a request to a host of the picture's choosing).
    The user's own --model / --base-model replace the picture's and lift this."""
    from gigacanvas.actors.loading import fetches

    for name in ("model", "base_model"):
        value = data.get(name)
        if name in flags or not isinstance(value, str):
            continue
        if fetches(value):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"picture {picture} names {name.replace('_', ' ')} {_quote(value, 80)}, a URL or hub id: a picture "
                f"cannot make gigacanvas download anything; pass {flag} yourself"
            )


def __getattr__(name: str) -> Any:
    """`load_spec_file` lives in specfile.py, which imports this module; importable here as before."""
    if name == "load_spec_file":
        from gigacanvas.cluster.specfile import load_spec_file

        return load_spec_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
