"""The model families gigacanvas knows, and the one place the generic code finds them.

Each family has one home (`models/sd3/`, `models/flux/`, `models/sdxl/`, `models/simulated.py`) that
describes it with one `Family`: the pipelines it serves, its
folders, its transformer class and config keys, its single-file layouts, its full-size
architectures, its tiny model and its adapter. Loading, checkpoints, convert, the worker and the
precision code read these fields and name no family, so a family is added by writing its home
and one line in `HOMES`, touching no other family's file.

A family's home module is light (no torch, no diffusers at import): dispatching on a folder's
`model_index.json` imports every home. What is heavy (the adapter, the tiny pipeline, diffusers'
key converters) is named as "module:attribute" and imported on first use by `load`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any, Callable

from gigacanvas.errors import UsageError

HOMES = (
    "gigacanvas.actors.models.sd3",
    "gigacanvas.actors.models.flux",
    "gigacanvas.actors.models.sdxl",
    "gigacanvas.actors.models.simulated",
)  # each defines FAMILY
DEFAULT = "sd3"  # the family of the built-in tiny model (`--model` unset, `demo-model`)
# The flow-matching samplers the band loop can step (one model call per step, no kept state), the
# `--scheduler` choices of the flow-matching families (SD3, Flux.1): see their docs for the rest.
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchLCMScheduler")


@dataclass(frozen=True)
class Family:
    """One model family as the generic code sees it: names, rules and where its code lives.

    A family is either a diffusers folder family (`pipelines` set: found by a folder's
    `model_index.json`) or a named stand-in (`scheme` set: found by a `--model` prefix, no files).
    """

    name: str  # ModelInfo.family, recorded in pictures; the built-in model's folder is tiny-NAME
    label: str  # what it covers, in errors: "SD3/SD3.5"
    short: str  # the family in a phrase: "is it an SD3 VAE config?"
    adapter: str  # "module:Class" of its ModelAdapter, imported when a worker loads
    pipelines: tuple[str, ...] = ()  # model_index.json `_class_name`s it serves
    components: tuple[str, ...] = ()  # folders that must hold a config.json and safetensors weights
    # The denoiser ("transformer" in the generic code, whatever its kind): the diffusers class it is
    # built as and the folder of a pipeline it lives in (SDXL's UNet: "unet").
    transformer_class: str = ""
    denoiser: str = "transformer"
    planner_keys: tuple[str, ...] = ()  # transformer config keys `sizes` reads: positive ints, written
    # (built transformer config, built VAE config) -> ModelInfo's sizes: latent_channels,
    # vae_scale_factor, patch_size, native_tile_px, max_tile_px
    sizes: Callable[[dict, dict], dict] | None = None
    scheduler: str = ""  # the scheduler it is made for, suggested when a folder's is refused
    # The diffusers scheduler classes `--scheduler` may pick, each configured from the folder's
    # scheduler config (`Cls.from_config`); empty: the folder's scheduler only. Every one must step
    # from its step index alone with one model call per step (configs.py's rules; the family's docs
    # say why its others are left out).
    schedulers: tuple[str, ...] = ()
    # The first key segment of its transformer blocks in the diffusers layout and in the original
    # (single-file) layout, which `convert_original` ("module:function") maps to diffusers' keys
    # (empty: original-layout files are refused).
    diffusers_blocks: str = ""
    original_blocks: str = ""
    convert_original: str = ""
    checkpoint_format: str = ""  # the `format` metadata of the transformer files `convert` writes
    # The `general.architecture` of its GGUF transformer files (city96's converter writes "flux",
    # "sd3"), loaded through diffusers' GGUF support (actors/ggufmodel.py); empty: GGUF is refused.
    gguf_arch: str = ""
    # Module-name patterns (re.search) of the layers city96's converter keeps out of the quantiser
    # (his llama.cpp patch, in diffusers' names): what a GGUF's byte count keeps in the compute dtype.
    gguf_kept: tuple[str, ...] = ()
    architectures: str = ""  # "module:ATTR", a dict of full-size transformer configs by name
    tiny_pipeline: str = ""  # "module:function", seed -> a tiny random-weight diffusers pipeline
    # Module-name patterns (re.search) kept out of FP8 besides precision.py's FP8_SKIP_PATTERNS:
    # the family's own names for its input and output layers.
    fp8_skip: tuple[str, ...] = ()
    scheme: str = ""  # a `--model` prefix it answers with no files ("simulated:")
    describe: Callable[[str, str | None], Any] | None = None  # with scheme: (model, base_model) -> ModelInfo

    def adapter_class(self) -> type:
        return load(self.adapter)


def load(ref: str) -> Any:
    """The attribute a "module:attribute" reference names, importing its module now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


@cache
def families() -> tuple[Family, ...]:
    """Every family, in `HOMES` order (which is the order errors list them in)."""
    return tuple(importlib.import_module(home).FAMILY for home in HOMES)


def family(name: str) -> Family:
    """The family called `name` (a ModelInfo's `family`)."""
    for candidate in families():
        if candidate.name == name:
            return candidate
    raise UsageError(f"model family {name!r} is unknown; gigacanvas knows {', '.join(f.name for f in families())}")


def supported() -> str:
    """The folder families, as errors list them: "SD3/SD3.5", "SD3/SD3.5, Flux.1 or SDXL"."""
    labels = [f.label for f in families() if f.pipelines]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def for_pipeline(class_name: Any, root: Any) -> Family:
    """The family serving a folder whose model_index.json names `class_name` (`root`: the folder,
    for the error); one line listing what is supported otherwise."""
    for candidate in families():
        if class_name in candidate.pipelines:
            return candidate
    names = [p for f in families() for p in f.pipelines]
    raise UsageError(
        f"model {root} is a {class_name or 'unknown'} folder; gigacanvas supports {supported()} "
        f"diffusers folders ({', '.join(names)})"
    )


def for_transformer(model: Any) -> Family | None:
    """The family whose transformer class `model` (a built transformer) is, if any."""
    return next((f for f in families() if f.transformer_class and f.transformer_class == type(model).__name__), None)


def for_scheme(model: str) -> Family | None:
    """The stand-in family a `--model` value names by its prefix, if any."""
    return next((f for f in families() if f.scheme and model.startswith(f.scheme)), None)
