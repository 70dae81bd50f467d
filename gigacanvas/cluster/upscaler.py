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
store being resumed, a picture's spec) whose file cannot be used now (moved, deleted, or another
model there) plans with an `UnusableUpscaler`: planning refuses it only where the store has no
first latent yet (plan.py; `render` checks again after its claim), so an interrupted render resumes
without the file, and a finished store writes its picture again. A spec that records one and is
given no file at all is refused at planning, as before.
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
    problem: str  # what is wrong with the file at `path`, without advice

    def describe(self) -> str:
        return f"{self.path} (fingerprint {self.fingerprint}): {self.problem}; not needed: the store is past its first latent"

    def refusal(self, url: str) -> UsageError:
        return UsageError(
            f"{self.problem}, and this render upscales with the model of fingerprint {self.fingerprint} (store {url} "
            f"has no first latent yet): put that file back at {self.path}, or pass --upscaler with it"
        )


def with_upscaler(asked: RenderSpec, spec: RenderSpec):
    """(spec with `upscaler_fingerprint` filled, actors/upscaler.py's UpscalerFile or None, a note
    or None) for `spec`, resolved from `asked` (plan.py's `resolve` drops the upscaler of a render
    that composes nothing). A spec that already records an upscaler (a picture, a store being
    resumed) is given the very same file, or plans with an `UnusableUpscaler`."""
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
        problem = str(exc).split("; ")[0]  # check_upscaler's line without its advice
        return spec, UnusableUpscaler(spec.upscaler, recorded, problem), None
    if recorded is not None and recorded != checked.fingerprint:
        problem = f"upscaler {spec.upscaler} is another model (fingerprint {checked.fingerprint})"
        return spec, UnusableUpscaler(spec.upscaler, recorded, problem), None
    return spec.replace(upscaler_fingerprint=checked.fingerprint), checked, None


def for_actors(upscaler) -> tuple[str, str] | None:
    """What an encode tile call takes (actors/worker.py's `encode_tile`): (path, fingerprint), or None."""
    if isinstance(upscaler, UnusableUpscaler):
        raise upscaler.refusal("of this stage")  # plan and render refuse it before Ray: the last guard
    return None if upscaler is None else (upscaler.path, upscaler.fingerprint)
