"""A diffusers sampler's step noise, drawn from the seed and the position instead of a stream.

Stochastic samplers (Euler ancestral, DDPM, DPM-Solver's SDE variants, FlowMatch Euler with
`stochastic_sampling`, LCM, ...) call `randn_tensor(shape, generator=...)` inside `step()`. A band
reducer steps only its own rows, so a draw from one stream would depend on how many bands came
before it (and on the actor count, and on where a render was resumed). While a band steps,
`keyed_noise` makes `randn_tensor` in the scheduler's module answer with the band's rows of
`tiling.noise.step_noise_window(seed, step, ...)`: the noise at a latent pixel is then the same
for any band split, exactly as the initial noise is.

Samplers that draw from a Brownian tree over the whole latent (`DPMSolverSDEScheduler`,
`CosineDPMSolverMultistepScheduler`, through torchsde) cannot be keyed so: `tree_noise` names
them and the model check refuses them.

The swap is a module attribute, so it assumes one scheduler steps at a time in a process: true
of a reducer actor (one call at a time) and of the driver's in-process reducers.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any


def _modules(cls: type, name: str) -> list[ModuleType]:
    """The modules of `cls` and its bases whose globals hold `name`."""
    found = []
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if module is not None and name in vars(module) and module not in found:
            found.append(module)
    return found


def tree_noise(cls: type) -> bool:
    """Whether the sampler draws its noise from a Brownian tree over the whole latent."""
    return bool(_modules(cls, "BrownianTreeNoiseSampler"))


@contextlib.contextmanager
def keyed_noise(scheduler: Any, draw: Callable[[tuple[int, ...]], Any]) -> Iterator[None]:
    """While stepping `scheduler`, its `randn_tensor(shape, ...)` returns `draw(shape)` (a float32
    torch tensor), moved to the device and dtype asked for; the generator is ignored."""
    modules = _modules(type(scheduler), "randn_tensor")

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None, **_):  # noqa: ARG001 - its signature
        noise = draw(tuple(shape))
        return noise.to(device=device if device is not None else noise.device, dtype=dtype or noise.dtype)

    saved = [module.randn_tensor for module in modules]
    for module in modules:
        module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        for module, original in zip(modules, saved):
            module.randn_tensor = original
