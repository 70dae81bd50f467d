"""The render spec: one frozen dataclass, built from a file and flags, validated once.

Every check raises `UsageError` with one sentence naming the field, the value and a fix, before
any model, store or cluster is touched. Code past this point trusts the spec.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigacanvas.actors.precision import MODES
from gigacanvas.errors import UsageError

ALIGN_PX = 16  # SD3: VAE factor 8 x patch 2; the model check re-validates against its own value
MAX_SEED = 2**63 - 1

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
)
# Fields that name places on this machine: left out of the spec a picture carries.
LOCAL_FIELDS = ("store", "out", "overwrite", "address")


@dataclass(frozen=True)
class RenderSpec:
    """What to render and how to spread it. Sizes are in pixels."""

    prompt: str
    negative_prompt: str = ""
    width: int = 1024
    height: int = 1024
    steps: int = 28
    guidance: float = 7.0
    seed: int = 0
    model: str | None = None  # SD3/SD3.5 folder, hub id or .safetensors file; None: the tiny model
    base_model: str | None = None  # with a single-file model: the folder with VAE, encoders, configs
    precision: str = "auto"  # see actors/precision.py
    strict_precision: bool = False  # fail instead of falling back to another precision
    tile_size: int | None = None  # None: the model's native size
    tile_overlap: int | None = None  # None: an eighth of the tile
    tile_batch: int = 2
    vae_tile_size: int | None = None  # None: the model's native size; 0: decode in one piece
    actors: int | None = None  # None: one per GPU, or 2 on a CPU-only cluster
    cpus_per_actor: float = 0.5
    store: str | None = None  # None: a .zarr folder next to `out`
    out: str = "gigacanvas.png"
    overwrite: bool = False
    address: str | None = None  # Ray cluster; None: RAY_ADDRESS or a local one

    def __post_init__(self) -> None:
        _check_types(self)
        if not isinstance(self.prompt, str):
            raise UsageError("prompt must be text")
        for name in ("width", "height"):
            _check_multiple(name, getattr(self, name), ALIGN_PX)
        if self.steps < 1:
            raise UsageError(f"steps {self.steps} must be at least 1")
        if self.guidance < 0:
            raise UsageError(f"guidance {self.guidance} must be non-negative (1 turns guidance off)")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed {self.seed} must be between 0 and {MAX_SEED}")
        if self.tile_size is not None:
            _check_multiple("tile_size", self.tile_size, ALIGN_PX)
        if self.tile_overlap is not None:
            if self.tile_overlap < 0 or self.tile_overlap % 8:
                raise UsageError(f"tile_overlap {self.tile_overlap} must be a non-negative multiple of 8")
            if self.tile_size is not None and self.tile_overlap >= self.tile_size:
                raise UsageError(
                    f"tile_overlap {self.tile_overlap} must be smaller than tile_size {self.tile_size}; "
                    f"try {self.tile_size // 8}"
                )
        if self.precision not in MODES:
            raise UsageError(f"precision {self.precision!r} is not one of {', '.join(MODES)}")
        if self.tile_batch < 1:
            raise UsageError(f"tile_batch {self.tile_batch} must be at least 1")
        if self.vae_tile_size is not None and self.vae_tile_size != 0:
            _check_multiple("vae_tile_size", self.vae_tile_size, ALIGN_PX)
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"actors {self.actors} must be at least 1")
        if not self.cpus_per_actor > 0:
            raise UsageError(f"cpus_per_actor {self.cpus_per_actor} must be positive, e.g. 0.5")
        if not self.out.lower().endswith(".png"):
            raise UsageError(f"out {self.out} must end in .png")

    @property
    def store_url(self) -> str:
        return self.store or str(Path(self.out).with_suffix(".zarr"))

    def content(self) -> dict[str, Any]:
        """The fields that decide the pixels (plus the model as given), for the store and PNG."""
        return {name: getattr(self, name) for name in CONTENT_FIELDS}

    def portable(self) -> dict[str, Any]:
        """Every field but the local paths: what a picture carries for `--spec picture.png`."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in LOCAL_FIELDS}

    def parameters_line(self, precision: str) -> str:
        """An A1111-style `parameters` text, the de facto format image tools read."""
        model = Path(self.model).name if self.model else "gigacanvas-tiny-sd3"
        return (
            f"{self.prompt}\nNegative prompt: {self.negative_prompt}\n"
            f"Steps: {self.steps}, Sampler: Euler (flow matching), CFG scale: {self.guidance}, "
            f"Seed: {self.seed}, Size: {self.width}x{self.height}, Model: {model}, "
            f"Tile size: {self.tile_size}, Tile overlap: {self.tile_overlap}, Precision: {precision}"
        )

    def replace(self, **changes: Any) -> RenderSpec:
        return dataclasses.replace(self, **changes)


FIELDS = {f.name: f for f in dataclasses.fields(RenderSpec)}


def _check_multiple(name: str, value: int, step: int) -> None:
    if value < step or value % step:
        better = max(step, -(-value // step) * step)
        raise UsageError(f"{name} {value} is not a positive multiple of {step}; try {better}")


def _check_types(spec: RenderSpec) -> None:
    """Flags arrive typed; files do not. Coerce what is unambiguous, refuse the rest."""
    for name, field in FIELDS.items():
        value = getattr(spec, name)
        kind = str(field.type)
        if value is None:
            if "None" not in kind:
                raise UsageError(f"{name.replace('_', '-')} is missing")
            continue
        try:
            if kind.startswith("int"):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif kind.startswith("float"):
                value = float(value)
            elif kind.startswith("bool"):
                if not isinstance(value, bool):
                    raise ValueError
            elif not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError):
            raise UsageError(f"{name} {value!r} is not a valid {kind.split(' ')[0]}") from None
        object.__setattr__(spec, name, value)


def _normalise_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            valid = ", ".join(sorted(FIELDS))
            raise UsageError(f"{source}: unknown key '{key}'; valid keys: {valid}")
        out[name] = value
    return out


def load_spec_file(path: str) -> dict[str, Any]:
    """Keys from a YAML, JSON or gigacanvas PNG file."""
    from gigacanvas.storage.picture import read_png_spec

    file = Path(path)
    if file.suffix.lower() == ".png":
        return _normalise_keys(read_png_spec(file), path)
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"spec file {path} is unreadable ({exc.__class__.__name__})") from exc
    is_json = file.suffix.lower() == ".json"
    try:
        if is_json:
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml share no error base
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UsageError(f"spec file {path} is not valid {'JSON' if is_json else 'YAML'} ({first})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"spec file {path} must hold a mapping of keys to values")
    return _normalise_keys(data, path)


def build_spec(spec_file: str | None = None, **flags: Any) -> RenderSpec:
    """A spec from an optional file, with every non-None flag overriding it."""
    data = load_spec_file(spec_file) if spec_file else {}
    data.update(_normalise_keys({k: v for k, v in flags.items() if v is not None}, "flags"))
    if "prompt" not in data:
        raise UsageError("prompt is missing; pass --prompt or a spec file with a prompt")
    return RenderSpec(**data)
