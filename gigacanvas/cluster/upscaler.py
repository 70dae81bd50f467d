"""`--upscaler FILE` at planning: checked, recorded as the spec's identity, or noted as unused.

The file is checked and fingerprinted by actors/upscaler.py (local .safetensors, a 3-channel
super-resolution model spandrel recognises). What a render records is the fingerprint
(`upscaler_fingerprint`, a content field: another model, other pixels), never the path (a local
field, like a LoRA's), so a picture made with an upscaler repeats only with the same file, and
pictures and stores without one are what they were before the field existed. Where nothing is
upscaled, a render that `compose auto` renders from noise, the upscaler is noted as unused and
recorded nowhere (a command line reused across canvas sizes still renders the small ones, as
composeplan.py's `strength_note` does for `--strength`); `--compose none` refuses it (spec.py).

The file is needed only to make a refinement's first latent. A spec that records an upscaler (a
store being resumed, a picture's spec) whose file cannot be read now (moved, deleted) plans with
an `UnusableUpscaler`: `render` refuses it, still before Ray, only where the store has no first
latent yet (cluster/render.py), so an interrupted render resumes without the file. Another file
than the recorded one, or none at all, is refused at planning as before: that is a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigacanvas.cluster.spec import RenderSpec, _quote
from gigacanvas.errors import UsageError


@dataclass(frozen=True)
class UnusableUpscaler:
    """The upscale model a spec records, whose file cannot be used now: enough for a store past its start."""

    path: str
    fingerprint: str
    reason: str  # check_upscaler's line

    def describe(self) -> str:
        return f"{self.path} (fingerprint {self.fingerprint}) cannot be used now ({self.reason}); a store past its start does not need it"

    def refusal(self) -> UsageError:
        return UsageError(
            f"{self.reason}, and this render upscales with it (its store has no first latent yet); "
            f"pass --upscaler with the file of fingerprint {self.fingerprint}"
        )


def with_upscaler(asked: RenderSpec, spec: RenderSpec):
    """(spec with `upscaler_fingerprint` filled, actors/upscaler.py's UpscalerFile or None, a note
    or None) for `spec`, resolved from `asked` (plan.py's `resolve` drops the upscaler of a render
    that composes nothing). A spec that already records an upscaler (a picture, a store being
    resumed) must be given the very same file."""
    recorded = spec.upscaler_fingerprint
    if spec.upscaler is None:
        if recorded is not None:
            raise UsageError(
                f"this spec was made with the upscale model of fingerprint {_quote(recorded)} and is given no "
                "--upscaler; pass --upscaler with that file"
            )
        if asked.upscaler is None:
            return spec, None, None
        return spec, None, (
            f"gigacanvas: note: --upscaler {_quote(asked.upscaler, 80)} has no effect: this canvas is rendered from "
            "noise, not composed, so nothing is upscaled"
        )
    from gigacanvas.actors.upscaler import check_upscaler

    try:
        checked = check_upscaler(spec.upscaler)
    except UsageError as exc:
        if recorded is None:
            raise
        return spec, UnusableUpscaler(spec.upscaler, recorded, str(exc)), None
    if recorded is not None and recorded != checked.fingerprint:
        raise UsageError(
            f"this spec was made with the upscale model of fingerprint {_quote(recorded)} and is given "
            f"{spec.upscaler} (fingerprint {checked.fingerprint}); pass --upscaler with the same file"
        )
    return spec.replace(upscaler_fingerprint=checked.fingerprint), checked, None


def for_actors(upscaler) -> tuple[str, str] | None:
    """What an encode tile call takes (actors/worker.py's `encode_tile`): (path, fingerprint), or None."""
    if isinstance(upscaler, UnusableUpscaler):
        raise upscaler.refusal()  # render refuses it before Ray: this is the last guard
    return None if upscaler is None else (upscaler.path, upscaler.fingerprint)
