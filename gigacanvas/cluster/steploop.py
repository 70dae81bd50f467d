"""The denoising loop: per step, tile predictions from the actors, one blend, one scheduler step.

The scheduler sees exactly one model output per step on the whole latent (the blend), so any
diffusers scheduler works and a one-tile render is the plain pipeline. Each finished step is
committed to the store before the next starts: an interruption loses at most the step in flight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from gigacanvas.cluster.dispatch import dispatch
from gigacanvas.storage.store import LatentStore
from gigacanvas.tiling import TileBlender, TileGrid


@dataclass(frozen=True)
class StepStats:
    steps_run: int
    tiles_run: int


def denoise(
    store: LatentStore,
    workers: Sequence[Any],
    grid: TileGrid,
    scheduler: Any,
    steps: int,
    tile_batch: int,
    guidance: float,
    on_step: Callable[[int], None] = lambda step: None,
    on_tiles: Callable[[int], None] = lambda n: None,
) -> StepStats:
    """Advance the store's latent from its committed step to `steps`."""
    import torch

    latent, start = store.read_latent()
    windows = grid.windows
    batches = grid.batches(tile_batch)
    blender = TileBlender(grid, channels=latent.shape[0])
    scheduler.set_begin_index(start)
    for step in range(start, steps):
        timestep = scheduler.timesteps[step]
        blender.reset()
        current = latent  # bound per step: the closures below read this step's latent

        def submit(worker: Any, batch: tuple[int, ...]) -> Any:
            tiles = np.stack([current[(slice(None), *windows[i].slices)] for i in batch])
            return worker.predict.remote(tiles, float(timestep), guidance)

        def on_done(batch: tuple[int, ...], preds: np.ndarray) -> None:
            for index, pred in zip(batch, preds):
                blender.add(index, pred)
            on_tiles(len(batch))

        dispatch(workers, batches, submit, on_done)
        velocity = torch.from_numpy(blender.result())[None]
        latent = scheduler.step(velocity, timestep, torch.from_numpy(latent)[None], return_dict=False)[0]
        latent = latent[0].numpy()
        store.commit_latent(latent, step + 1)
        on_step(step + 1)
    return StepStats(steps_run=steps - start, tiles_run=(steps - start) * len(windows))
