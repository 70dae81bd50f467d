"""A stand-in model whose tile calls sleep: the rest of a render stays real.

`gigacanvas bench` renders with it to time what is not the model (planning, transfers, dispatch,
blending, the scheduler, the store) without GPU time or weights. `predict` sleeps a fixed time
per tile and returns a cheap deterministic function of its tiles and timestep, so a run is as
reproducible as a real model's. Its shape is SD3.5's (16 latent channels, VAE factor 8, patch 2,
1024 px native tile), so it plans the same tiles as a real render of the same canvas, and its
scheduler is SD3's (flow-matching Euler, shift 3).

Asked for as `--model simulated:SECONDS[,slow=FACTOR]`: SECONDS of sleep per tile and, with
`slow`, one actor FACTOR times slower than the rest (clusters mix GPU kinds). Which actor is slow
is settled when the workers load: each takes a number from a counter actor named within the Ray
job, and number 0 is the slow one. An adapter outside Ray is number 0.

It is a family like any other (`FAMILY` below), found by its `simulated:` prefix instead of a
folder; it has no files, so nodes have nothing to fetch or fingerprint.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from gigacanvas.actors.adapter import ModelAdapter, ModelInfo
from gigacanvas.actors.models import Family
from gigacanvas.errors import UsageError
from gigacanvas.tiling.decodepasses import TailLayout

PREFIX = "simulated:"
MAX_TILE_SECONDS = 3600.0
MAX_SLOW = 1000.0
SLOTS_ACTOR = "gigacanvas-simulated-slots"  # one per Ray job (named actors live in its namespace)


def simulated_model(tile_seconds: float, slow: float = 1.0) -> str:
    """The `--model` value for `tile_seconds` per tile, one actor `slow` times slower."""
    return f"{PREFIX}{tile_seconds!r}" + (f",slow={slow!r}" if slow != 1 else "")


def _number(text: str, what: str, low: float, high: float, model: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # also refuses nan and inf
        raise UsageError(
            f"model {model[:60]!r}: {what} {text[:20]!r} must be a finite number from {low:g} to {high:g} "
            f"(the form is {PREFIX}SECONDS[,slow=FACTOR])"
        )
    return value


def simulated_info(model: str, base_model: str | None = None) -> ModelInfo:
    """The ModelInfo of a `simulated:SECONDS[,slow=FACTOR]` model; refuses any other spelling."""
    if base_model is not None:
        raise UsageError(f"model {model[:60]!r} is simulated and takes no --base-model")
    seconds_text, _, rest = model.removeprefix(PREFIX).partition(",")
    seconds = _number(seconds_text, "seconds per tile", 0.0, MAX_TILE_SECONDS, model)
    slow = 1.0
    if rest:
        key, equals, value = rest.partition("=")
        if key != "slow" or not equals:
            raise UsageError(f"model {model[:60]!r} is not of the form {PREFIX}SECONDS[,slow=FACTOR]")
        slow = _number(value, "slow", 1.0, MAX_SLOW, model)
    return ModelInfo(
        family="simulated",
        path=model,
        fingerprint=f"simulated-{seconds!r}s-slow{slow!r}",  # a store of other timings is another render
        latent_channels=16,
        vae_scale_factor=8,
        patch_size=2,
        native_tile_px=1024,
        options=(("slow", slow), ("tile_seconds", seconds)),
    )


@dataclass(frozen=True)
class SimulatedConditioning:
    """A digest of the prompts: tiny, picklable, and different for different prompts."""

    digest: str
    guidance: float


class _Slots:
    """Hands out 0, 1, 2, ... to the workers of one render, in the order they load."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next - 1


def _worker_number() -> int:
    """This process's number among the render's workers (0 outside Ray or in the driver)."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return 0
    for attempt in range(5):
        # The first worker creates the counter and owns it, so it ends with the render's workers.
        slots = ray.remote(_Slots).options(name=SLOTS_ACTOR, get_if_exists=True, num_cpus=0).remote()
        try:
            return ray.get(slots.take.remote())
        except ray.exceptions.RayActorError:  # a previous render's counter, dying with its owner
            time.sleep(0.2 * (attempt + 1))
    raise RuntimeError("the simulated model's worker counter kept dying; is the Ray cluster healthy?")


class SimulatedAdapter(ModelAdapter):
    """Sleeps `tile_seconds` per tile (times `slow` on worker 0) and computes almost nothing."""

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32"):
        super().__init__(info, device, precision)
        options = dict(info.options)
        self.tile_seconds = float(options.get("tile_seconds", 0.0))
        self.slow = float(options.get("slow", 1.0))
        self.seconds_per_tile: float | None = None  # settled by preload(), once the worker's number is known

    def preload(self) -> None:
        if self.seconds_per_tile is None:
            slow = self.slow if self.slow != 1 and _worker_number() == 0 else 1.0
            self.seconds_per_tile = self.tile_seconds * slow

    def make_scheduler(self, steps: int, latent_h: int, latent_w: int, scheduler: str | None = None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)  # SD3's config
        scheduler.set_timesteps(steps, device="cpu")
        return scheduler

    def encode_prompt(self, prompt: str, negative_prompt: str, guidance: float) -> SimulatedConditioning:
        digest = hashlib.sha256(f"{prompt}\0{negative_prompt}".encode()).hexdigest()[:16]
        return SimulatedConditioning(digest, float(guidance))

    def predict(self, tiles: np.ndarray, timestep: float, cond: SimulatedConditioning, guidance: float) -> np.ndarray:
        self.preload()
        time.sleep(self.seconds_per_tile * len(tiles))
        # A velocity-like output that shrinks the latent a little each step: bounded, cheap, exact.
        return (np.float32(0.5) * tiles.astype(np.float32) + np.float32(timestep / 1000.0)).astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        f = self.info.vae_scale_factor
        rgb = np.tanh(latents[:, :3].astype(np.float32))  # in [-1, 1]
        return rgb.repeat(f, axis=2).repeat(f, axis=3)

    def decode_stages(self) -> SimulatedStages:
        return SimulatedStages(self.info.vae_scale_factor)

    def release(self, role: str) -> None:
        """Nothing is held."""


class SimulatedStages:
    """The seamless decode's stages for the simulated model: no GroupNorm, no halo; the tail
    upsamples what `decode` does, so both decodes give the same pixels."""

    layout = TailLayout(norm_segments=(), reach=(0.0,), channels=(3,), scales=(1,))

    def __init__(self, scale: int):
        self.scale = scale

    def head(self, latent: np.ndarray, wrap=(False, False)) -> np.ndarray:
        return np.tanh(latent[:3].astype(np.float32))

    def run(self, window: np.ndarray, core, start: int, end: int, known, probe=None, wrap=(False, False)) -> np.ndarray:
        return self.tail(window, core, known, probe)

    def tail(self, window: np.ndarray, core, known, probe=None, wrap=(False, False)) -> np.ndarray:
        if probe is not None:
            raise ValueError("the simulated model has no GroupNorm to probe")
        f = self.scale
        rgb = window[:, core.y : core.y + core.h, core.x : core.x + core.w]
        return rgb.repeat(f, axis=1).repeat(f, axis=2)

    def record(self, x: np.ndarray, start: int, wrap=(False, False)) -> list[np.ndarray]:
        return []


FAMILY = Family(
    name="simulated",
    label="simulated",
    short="simulated",
    adapter="gigacanvas.actors.models.simulated:SimulatedAdapter",
    scheme=PREFIX,
    describe=simulated_info,
)
