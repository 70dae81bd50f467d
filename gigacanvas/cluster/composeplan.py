"""How a render's `compose` and `strength` resolve: whether `auto` composes, and what is refused.

A spec's `compose` (auto, none or a stage count) and `strength` become, for a given model, a
stage count or none and a strength or none; a picture records the resolved pair, so a later
meaning of `auto` never changes it. Which canvases `auto` composes follows the spec version
(versions 1-3: none; 4: larger than the native area, but no torus; 5: a torus too), so pictures
and stores made before re-render as made. Pure decisions on the spec and the model's sizes: no
Ray, no I/O. plan.py's `resolve` calls this; `strength_note` says when a --strength goes unused.
"""

from __future__ import annotations

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.cluster.spec import RenderSpec
from gigacanvas.errors import UsageError


def resolve_compose(spec: RenderSpec, info: ModelInfo, steps: int) -> tuple[str, float | None]:
    """(compose as a stage count or none, strength): `auto` composes a canvas larger than the
    model's native area in one stage; versions 1-3 knew no composition (their pictures render as
    made), and version 4 composed no torus. A picture records the resolved value, so a later
    meaning of auto cannot change it.

    A refinement that would start at step 0 below strength 1 starts from pure noise: the picture
    it refines would not count (2 steps at 0.6, say). `auto` then does not compose; an upscale or
    an explicit stage count is refused in one line rather than silently ignore the picture."""
    from gigacanvas.cluster.spec import DEFAULT_STRENGTH

    strength = DEFAULT_STRENGTH if spec.strength is None else spec.strength
    if spec.source is not None:  # an upscale refines its source: nothing to compose (cluster/upscale.py)
        _check_start(steps, strength, "picture")
        return "none", strength
    compose = spec.compose or _default_compose(spec.spec_version)
    if compose == "auto":
        compose = "none" if auto_declines(spec, info, steps, strength) else "1"
    if compose == "none":
        return "none", None
    resolved = spec.replace(compose=compose)
    stuck = _fixed_torus_stage(resolved, info)
    if stuck:
        raise UsageError(f"compose {compose} with wrap {spec.wrap} needs shifted windows: {stuck}; drop --shift-windows off")
    _check_start(steps, strength, "composition")
    return compose, strength


def _fixed_torus_stage(spec: RenderSpec, info: ModelInfo) -> str | None:
    """Why a composed torus on a fixed grid would keep a seam (the end of a sentence), or None.

    Each stage is a render of the torus at its size (`sizes` refuses stages that do not fit the
    canvas); one whose wrapped side fits a single tile never moves it across the join on a fixed
    grid, as `resolve` refuses for the canvas itself."""
    from gigacanvas.cluster.compose import sizes

    every = sizes(spec, info)  # one line if the stages do not fit the canvas
    if not spec.wrap or spec.shift_windows:
        return None
    for width, height in every[:-1]:
        if (spec.wrap_x and width <= spec.tile_size) or (spec.wrap_y and height <= spec.tile_size):
            return f"its {width}x{height} px stage fits one {spec.tile_size} px tile, which a fixed grid never moves across the join"
    return None


def auto_declines(spec: RenderSpec, info: ModelInfo, steps: int, strength: float) -> str | None:
    """Why `compose auto` renders this canvas from noise (the end of a sentence), or None: it composes."""
    from gigacanvas.tiling.compose import start_step

    native = info.native_tile_px
    if spec.width * spec.height <= native**2:
        return f"the canvas is no larger than the model's native area ({native}x{native} px): nothing to refine"
    if not (start_step(steps, strength) > 0 or strength >= 1):
        return f"strength {strength:g} of {steps} steps would start the refinement at step 0, from pure noise"
    if spec.wrap and not _composes_torus(spec.spec_version):
        return f"spec version {spec.spec_version} composed no wrapped canvas"
    if spec.wrap and spec.tile_size is not None and spec.shift_windows is not None:  # resolved
        stuck = _fixed_torus_stage(spec.replace(compose="1"), info)
        if stuck:
            return stuck
    return None


def _composes_torus(version: object) -> bool:
    """Version 5 composes a wrapped canvas (the upscale and the encode wrap too); version 4's auto
    rendered it from noise, and its pictures and stores re-render as made."""
    return isinstance(version, int) and version >= 5


def strength_note(asked: RenderSpec, resolved: RenderSpec, info: ModelInfo) -> str | None:
    """A line for a `--strength` given to a render that `compose auto` renders from noise.

    A note, not a refusal: auto is the default, and a command line reused across canvas sizes (a
    strength chosen for the large ones) should still render the small ones. An explicit
    `--compose none` with `--strength` is refused instead (spec.py): there the user asked for both."""
    if asked.strength is None or resolved.compose != "none" or resolved.source is not None:
        return None
    why = auto_declines(resolved, info, resolved.steps, asked.strength)
    if why is None:  # a version before composition: its auto meant none
        why = f"spec version {resolved.spec_version} composed nothing"
    return f"gigacanvas: note: --strength {asked.strength:g} has no effect: compose auto renders from noise, as {why}"


def _check_start(steps: int, strength: float, what: str) -> None:
    from gigacanvas.tiling.compose import start_step

    if start_step(steps, strength) >= steps:  # a strength so small that steps * strength rounds away
        raise UsageError(
            f"strength {strength:g} of {steps} steps leaves the refinement no step to run (it would start at step "
            f"{steps} of {steps}); pass --strength {1 / steps:.3g} or more"
        )
    if strength >= 1 or start_step(steps, strength) > 0:
        return
    need = next(s for s in range(steps, steps + 10_000) if start_step(s, strength) > 0)
    fits = [k / 1000 for k in range(1, 1000) if start_step(steps, k / 1000) > 0]
    lower = f", or --strength {fits[-1]:g} or less" if fits else ""
    raise UsageError(
        f"strength {strength:g} of {steps} steps starts the refinement at step 0, from pure noise: the {what} "
        f"would not count; pass --steps {need} or more{lower}"
    )


def _default_compose(version: object) -> str:
    """Version 4 composes large canvases first; versions 1-3 rendered every canvas from noise."""
    return "auto" if isinstance(version, int) and version >= 4 else "none"
