"""The denoising loop: tiles to the workers, predictions to the band reducers, a barrier per step.

The latent lives in row bands, each held by a reducer actor (cluster/reducer.py) that serves the
rows of tile windows, folds the predictions for its rows in tile order, steps its own scheduler
copy and commits its band to the store. The driver only passes object references: a worker gets
its windows as the reducers' refs (Ray resolves them on the worker) and its predictions go, cut
per band, straight to the reducers that own their rows; the driver holds no canvas-sized array.

Ordering is what keeps the pixels fixed: Ray runs one caller's calls to an actor in the order
they were sent, so a reducer serves a step's windows, then folds predictions (in tile order
whatever the arrival order), then advances, then serves the next step's windows. Each step ends
with every band committed (the per-step barrier), so a crash leaves bands at most one step apart
and the store reads them at one step (storage/store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gigacanvas.cluster.dispatch import dispatch
from gigacanvas.cluster.reducer import InProcessReducer, reducer_actor_class
from gigacanvas.errors import RenderError
from gigacanvas.storage.store import LatentStore
from gigacanvas.tiling import TileGrid
from gigacanvas.tiling.bands import batch_cuts

# Float64 blend per band: 8K (16 x 1024 x 1024 latent) makes 2 bands. Measured with 8 sleeping
# actors on 2 cores: 2 bands 2.72 s/step, 4 bands 2.92, 8 bands 3.4 (reducers compete for cores).
BAND_BYTES = 64 * 2**20


def band_count(channels: int, height: int, width: int, actors: int) -> int:
    """How many row bands (reducers) a latent gets: one per BAND_BYTES of blend, at most one per actor."""
    return max(1, min(actors, -(-channels * height * width * 8 // BAND_BYTES)))


@dataclass(frozen=True)
class StepStats:
    steps_run: int
    tiles_run: int


def _get(refs: list, what: str) -> list:
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayActorError as exc:
        raise RenderError(f"a {what} actor died ({exc.__class__.__name__}); the store keeps the last step") from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        raise RenderError(f"a {what} failed: {cause.__class__.__name__}: {cause}") from None


def start_reducers(store: LatentStore, grid: TileGrid, scheduler: Any, channels: int) -> list:
    """One reducer actor per band of the store, its scheduler copy shipped with it.

    Returns at once; `load_reducers` waits for them. A `memory://` store exists only in this
    process, so its reducers run here too; a local path's reducers run on the driver's node.
    """
    bands = range(len(store.bands))
    if store.protocol == "memory":
        return [InProcessReducer(store.url, band, grid, scheduler, channels) for band in bands]
    cls = reducer_actor_class()
    if store.location.local:
        # A path is this machine's disk: reducers on other nodes would write their bands elsewhere.
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        cls = cls.options(scheduling_strategy=here)
    return [cls.remote(store.url, band, grid, scheduler, channels) for band in bands]


def load_reducers(reducers: Sequence[Any], step: int) -> None:
    """Each reducer reads its band at `step`, a step every band can be read at; waits for them all."""
    _get([r.load.remote(step) for r in reducers], "reducer")


def stop_reducers(reducers: Sequence[Any]) -> None:
    import ray

    for reducer in reducers:
        if not isinstance(reducer, InProcessReducer):
            ray.kill(reducer, no_restart=True)


def denoise(
    store: LatentStore,
    workers: Sequence[Any],
    reducers: Sequence[Any],
    grid: TileGrid,
    scheduler: Any,
    steps: int,
    tile_batch: int,
    guidance: float,
    on_step: Callable[[int], None] = lambda step: None,
    on_tiles: Callable[[int], None] = lambda n: None,
) -> StepStats:
    """Advance the store's latent from its committed step to `steps`; the reducers are loaded there."""
    start = store.committed_step()
    windows = grid.windows
    bands = store.bands
    jobs = [(batch, batch_cuts(windows, batch, bands)) for batch in grid.batches(tile_batch)]
    for step in range(start, steps):
        timestep = float(scheduler.timesteps[step])
        # Every window of the step is asked for up front: a reducer serves them before it
        # blocks on the step's first prediction (its calls run in the order they were sent).
        parts = [[reducers[band].window_rows.remote(batch) for band, _ in cuts] for batch, cuts in jobs]
        added: list = []

        def submit(worker: Any, job: int, timestep: float = timestep, parts: list = parts, added: list = added) -> Any:
            batch, cuts = jobs[job]
            refs = worker.predict_bands.options(num_returns=len(cuts) + 1).remote(
                cuts, timestep, guidance, *parts[job]
            )
            for (band, _), ref in zip(cuts, refs[:-1]):
                added.append(reducers[band].add.remote(batch, ref))
            parts[job] = None  # the windows' refs go out of scope once the worker has them
            return refs[-1]  # the tile count: all the driver ever fetches from a worker

        dispatch(workers, range(len(jobs)), submit, lambda job, n: on_tiles(n))
        _get(added, "reducer")
        if store.lease is not None:
            store.lease.check()  # the reducers commit next; a render that lost the store stops here
        _get([r.advance.remote() for r in reducers], "reducer")
        on_step(step + 1)
    return StepStats(steps_run=steps - start, tiles_run=(steps - start) * len(windows))
