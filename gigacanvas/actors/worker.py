"""The model worker: one per GPU (or CPU slice), holding every role a render needs.

`Worker` is a plain object so tests drive it without Ray; `WorkerActor` is the Ray shell around
it. One worker type instead of separate encoder, denoiser and decoder actors keeps one model copy
per device and lets the VAE decode reuse the actors that just finished denoising, so the decode at
the end never waits for new placements on a busy cluster.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.actors.loading import load_adapter, quiet_libraries


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Worker:
    """Encodes once, predicts tile batches, decodes latent tiles, for one model."""

    def __init__(self, info: ModelInfo, threads: int | None = None):
        quiet_libraries()
        import torch

        if threads:
            # Fixed thread count: CPU matmul reductions split by thread, so it is part of the bits.
            torch.set_num_threads(threads)
        self.adapter = load_adapter(info, _device())
        self.adapter.preload()
        self._cond: Any = None

    def ready(self) -> str:
        """Returns the device once the worker is up (the driver's start-up check)."""
        return self.adapter.device

    def encode(self, prompt: str, negative_prompt: str, guidance: float) -> Any:
        cond = self.adapter.encode_prompt(prompt, negative_prompt, guidance)
        self.adapter.release("text")
        return cond

    def set_conditioning(self, cond: Any) -> None:
        """Keeps the render's conditioning so each tile call need not ship it again."""
        self._cond = cond

    def predict(self, tiles: np.ndarray, timestep: float, guidance: float) -> np.ndarray:
        if self._cond is None:
            raise RuntimeError("set_conditioning must run before predict")
        return self.adapter.predict(tiles, timestep, self._cond, guidance)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self.adapter.decode(latents)


def worker_actor_class():
    """The Ray actor class, made on demand so importing this module never needs Ray."""
    import ray

    return ray.remote(max_restarts=0)(Worker)
