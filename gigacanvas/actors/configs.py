"""A model's configs, checked in the driver by building each component from its config alone.

A config that diffusers cannot build fails the same way on every actor, after Ray has started
them, as a long remote traceback. Building the transformer and the VAE here with accelerate's
`init_empty_weights(include_buffers=True)` (every parameter and buffer on the meta device: SD3.5
Large costs a few MB and a third of a second) and the scheduler as the render will set it up
turns each of those into one line before anything starts. The check is diffusers' own
`from_config`, not a schema of ours that could drift from it; the sizes the planner uses are
read back from the built component's config, defaults filled in exactly as the actors will.
Which class, which keys and which words come from the model's `Family` (actors/models/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gigacanvas.actors.models import Family
from gigacanvas.actors.stepnoise import tree_noise
from gigacanvas.errors import UsageError

_JSON_KINDS = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def read_json(path: Path, what: str) -> dict:
    """A config file's JSON object; unreadable, not JSON, or not an object is one UsageError."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {what} {path} is unreadable ({exc.__class__.__name__})") from exc
    return as_object(data, f"{what} {path}")


def as_object(data: Any, what: str) -> dict:
    """`data` if it is a JSON object (a dict); diffusers configs always are."""
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), type(data).__name__)
        raise UsageError(f"model {what} holds {kind}, not a JSON object; is the file damaged?")
    return data


def _detail(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _build(cls, config: dict):
    """`cls.from_config(config)` with every tensor on the meta device: no memory, no weights."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=True):
        return cls.from_config(config)


def _check_class(config: dict, expected: str, what: str, family: Family) -> None:
    name = config.get("_class_name")
    if name not in (None, expected):
        raise UsageError(f"model {what} is for {name}, not {expected}; is it an {family.label} model?")


def check_transformer(config: dict, source: str, family: Family) -> dict:
    """`family`'s transformer config as diffusers builds it (defaults filled), or a UsageError.

    `source` names where the config came from: `<folder>/transformer/config.json` or a file
    written by `convert`. The keys the planner reads (`family.planner_keys`) must be written.
    """
    import diffusers

    _check_class(config, family.transformer_class, f"transformer config {source}", family)
    for key in family.planner_keys:
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            found = "has no" if key not in config else f"has {json.dumps(value)} for"
            raise UsageError(
                f"model transformer config {source} {found} {key} (a positive whole number); "
                f"is it an {family.label} transformer config?"
            )
    try:
        built = _build(getattr(diffusers, family.transformer_class), config)
    except Exception as exc:  # noqa: BLE001 - whatever from_config raises, the config is at fault
        raise UsageError(
            f"model transformer config {source} cannot be built by diffusers ({_detail(exc)}); "
            f"is it an {family.label} transformer config?"
        ) from None
    return dict(built.config)


def check_vae(root: Path, family: Family) -> dict:
    """`root`'s VAE config as diffusers builds it (defaults filled), or a UsageError."""
    from diffusers import AutoencoderKL

    path = root / "vae" / "config.json"
    config = read_json(path, "config")
    _check_class(config, "AutoencoderKL", f"config {path}", family)
    try:
        built = _build(AutoencoderKL, config)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"model config {path} cannot be built by diffusers ({_detail(exc)}); is it an {family.short} VAE config?"
        ) from None
    return dict(built.config)


def _band_unsafe(cls: type, config: dict) -> str | None:
    """Why a scheduler's step is not the same per band as on the whole latent; None if it is.

    Each band reducer steps its own copy of the scheduler on its rows (cluster/reducer.py), which
    equals the whole latent's step for a step that is per pixel. Samplers that add noise in
    `step()` get it keyed by seed, step and position (actors/stepnoise.py), so they qualify;
    dynamic thresholding takes a quantile of the whole latent, and a Brownian tree draws its
    noise for the whole latent at once: those do not.
    """
    if config.get("thresholding"):
        return "uses dynamic thresholding (a quantile of the whole latent)"
    if tree_noise(cls):
        return "draws its noise from a Brownian tree over the whole latent"
    return None


# What a scheduler keeps from earlier steps besides its step index (multistep solvers' model
# outputs, PNDM's `ets`, LMS's derivatives, second-order samplers' half-step state).
_HISTORY = ("model_outputs", "ets", "derivatives", "prev_derivative", "last_sample", "sample", "cur_model_output")


def _not_resumable(scheduler: Any, steps: int) -> str | None:
    """Why a scheduler set to `steps` steps cannot be stepped as gigacanvas steps it; None if it can.

    The loop calls the model once per timestep and each band reducer starts its scheduler copy
    afresh at the step it loads (a new render, a resume, a reducer restarted), so a step may
    depend on the step index alone, never on what earlier steps left behind: a resumed render
    must be the same pixels as one that never stopped.
    """
    if getattr(scheduler, "order", 1) != 1 or len(scheduler.timesteps) != steps:
        return f"calls the model more than once per step ({len(scheduler.timesteps)} timesteps for {steps} steps)"
    kept = [name for name in _HISTORY if hasattr(scheduler, name)]
    if kept:
        return f"keeps earlier steps' state ({kept[0]}: a multistep solver), which a resumed band would not have"
    return None


def _scheduler_class(name: Any) -> type | None:
    """The diffusers scheduler class called `name`, or None if there is no such class."""
    import diffusers

    try:
        cls = getattr(diffusers, name) if isinstance(name, str) and name.isidentifier() else None
    except Exception:  # noqa: BLE001 - AttributeError, or an optional backend missing
        cls = None
    return cls if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin) else None


def _allowed(family: Family) -> str:
    """The schedulers `--scheduler` may pick for `family`, as a refusal lists them."""
    names = family.schedulers
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_choice(name: str, family: Family) -> None:
    """Refuse a `--scheduler` that `family` does not allow (its `schedulers`), in one line that says
    why where the band loop's rules do (a multistep or second-order sampler) and names the allowed."""
    if name in family.schedulers:
        return
    if not family.schedulers:
        raise UsageError(f"scheduler {name} cannot be chosen for {family.label} models, which run their own; drop --scheduler")
    cls = _scheduler_class(name)
    if cls is None:
        raise UsageError(f"scheduler {json.dumps(name)[:60]} is not a diffusers scheduler; {family.label} allows {_allowed(family)}")
    try:
        scheduler = cls()
        scheduler.set_timesteps(2)
    except Exception:  # noqa: BLE001 - a class that needs more than its defaults: the plain reason
        scheduler = None
    why = _band_unsafe(cls, {}) or (scheduler is not None and _not_resumable(scheduler, 2)) or f"is not made for {family.label} models"
    raise UsageError(f"scheduler {name} {why}; {family.label} allows {_allowed(family)}")


def check_scheduler(root: Path, family: Family, choice: str | None = None) -> None:
    """Refuse a missing scheduler config, a class that is not a diffusers scheduler, a config
    that cannot be built and set to a few steps (what the driver does once the actors run), and
    a sampler the band loop cannot step (`_band_unsafe`, `_not_resumable`).

    With `choice` (`--scheduler`) that class, allowed by the family, is built from the folder's
    config instead, as the adapters build it, and the folder's own class is not used (so a
    `--scheduler` is the way around a folder whose sampler the band loop cannot step)."""
    path = root / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        raise UsageError(f"model {root} has no scheduler/scheduler_config.json; is the download complete?")
    config = read_json(path, "config")
    if choice is not None:
        check_choice(choice, family)
    name = choice or config.get("_class_name")
    cls = _scheduler_class(name)
    if cls is None:
        raise UsageError(
            f"model config {path} names {json.dumps(name)}, which is not a diffusers scheduler; "
            f"{family.short} uses {family.scheduler}"
        )
    if choice:  # allowed by the family; its folder's config can still make it unusable
        what, per_pixel = f"scheduler {name} (configured from model config {path})", f"choose another: {_allowed(family)}"
        single = per_pixel
    else:
        what = f"model config {path}: {name}"
        flag = "pass --scheduler or " if family.schedulers else ""
        per_pixel = f"{flag}set a per-pixel sampler such as {family.scheduler}"
        single = f"so {flag}set a single-step sampler such as {family.scheduler}"
    unsafe = _band_unsafe(cls, config)
    if unsafe:
        raise UsageError(
            f"{what} {unsafe}, and gigacanvas steps the latent in row bands, so the pixels would depend on how many "
            f"there are; {per_pixel}"
        )
    try:
        scheduler = cls.from_config(config)
        # mu's value does not matter here, only that set_timesteps accepts the config
        scheduler.set_timesteps(2, **({"mu": 1.0} if scheduler.config.get("use_dynamic_shifting") else {}))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"model config {path} cannot be set up as a {name} by diffusers ({_detail(exc)}); is it damaged?") from None
    unsafe = _not_resumable(scheduler, 2)
    if unsafe:
        raise UsageError(f"{what} {unsafe}; gigacanvas steps each band from its step alone, {single}")


def check_pair(latent_channels: int, vae: dict, root: Path) -> None:
    """The transformer (taking `latent_channels`, as its family's `sizes` reads them) must denoise
    the latents this VAE makes."""
    if latent_channels != vae.get("latent_channels"):
        raise UsageError(
            f"model {root}: the transformer takes {latent_channels} latent channels but the VAE "
            f"makes {vae.get('latent_channels')}; the transformer and vae/ come from different models"
        )
