"""`--upscaler FILE` at planning: checked, recorded as the spec's identity, or noted as unused.

The file is checked and fingerprinted by actors/upscaler.py (local .safetensors, a 3-channel
super-resolution model spandrel recognises). What a render records is the fingerprint
(`upscaler_fingerprint`, a content field: another model, other pixels), never the path (a local
field, like a LoRA's), so a picture made with an upscaler repeats only with the same file, and
pictures and stores without one are what they were before the field existed. Where nothing is
upscaled, a render that `compose auto` renders from noise, the upscaler is noted as unused and
recorded nowhere (a command line reused across canvas sizes still renders the small ones, as
composeplan.py's `strength_note` does for `--strength`); `--compose none` refuses it (spec.py).
"""

from __future__ import annotations

from gigacanvas.cluster.spec import RenderSpec, _quote
from gigacanvas.errors import UsageError


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

    checked = check_upscaler(spec.upscaler)
    if recorded is not None and recorded != checked.fingerprint:
        raise UsageError(
            f"this spec was made with the upscale model of fingerprint {_quote(recorded)} and is given "
            f"{spec.upscaler} (fingerprint {checked.fingerprint}); pass --upscaler with the same file"
        )
    return spec.replace(upscaler_fingerprint=checked.fingerprint), checked, None


def for_actors(upscaler) -> tuple[str, str] | None:
    """What an encode tile call takes (actors/worker.py's `encode_tile`): (path, fingerprint), or None."""
    return None if upscaler is None else (upscaler.path, upscaler.fingerprint)
