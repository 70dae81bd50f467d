"""The denoising loop as a wavefront: each tile steps on as soon as the bands under it have.

The latent lives in row bands, each held by a reducer actor (cluster/reducer.py) that serves the
rows of tile windows, folds the predictions for its rows in tile order, steps its own scheduler
copy and commits its band to the store. The driver only passes object references and counts: a
worker gets its windows as the reducers' refs (Ray resolves them on the worker) and its
predictions, cut per band, go as refs to the reducers that own their rows; the driver holds no
canvas-sized array and never fetches one. Windows come from the reducers, not the store: a
worker on another node could read a path store only through object storage (up to four 1 MiB
chunk GETs per window), while the reducers hold their rows in any case; the fetch overlaps the
worker's previous tile (benchmarks/window_fetch.py, docs/benchmarks.md).

No global barrier. A job (a batch of tiles) at step s is sent as soon as every band under it
holds step s; a band advances (blend, scheduler step, commit) as soon as every job reaching it
has been added at its step. So the top of the canvas runs ahead while the bottom finishes, and
no worker waits for the slowest tile of the whole canvas. One bound is kept: a band commits step
s + 1 only after every band has committed step s, so the store always holds one step every band
can be read at (storage/store.py) and the run-ahead is at most one step.

Each step may have its own tile grid (shifted windows, tiling/shift.py): the driver plans a
step's jobs from that step's grid when the first band reaches it, and each reducer blends by the
grid of the step it holds. Both are pure functions of the spec and the step, so nothing but the
step number passes between them.

Why pixels do not depend on arrival order: each reducer folds in tile order whatever the order
of its `add` calls, and Ray runs one caller's calls to an actor in the order they were sent; the
driver sends a band's `window_rows` for step s only after its `advance` to s has finished and
before its `advance` to s + 1 (that one waits for every add of step s, whose windows were asked
for before them). Worker-side Ray primitives were weighed: Compiled Graphs fix one static graph
per step and do not survive a dead actor; actor concurrency groups would let a reducer serve
windows while folding, which the order above makes unnecessary; `ray.wait` over worker results
and reducer events together is all the driver needs.

A dead worker's jobs run again elsewhere (cluster/dispatch.py); a lost prediction (its worker's
node gone before a reducer fetched it) runs again for the bands still missing it. A dead reducer
ends the render (exit 1) with the store at its last committed state, which resumes to the same
pixels: its band's rows since that commit existed only in its memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gigacanvas.cluster.dispatch import WorkerPool, task_failure
from gigacanvas.cluster.reducer import InProcessReducer, reducer_actor_class
from gigacanvas.errors import RenderError
from gigacanvas.storage.store import LatentStore
from gigacanvas.tiling.bands import batch_cuts
from gigacanvas.tiling.shift import StepGrids

# Float64 blend per band. Bands are the wavefront's grain: a band advances once every tile
# reaching it is in, and the tiles under it step on. Measured at 8192x8192 (a 16 x 1024 x 1024
# latent), 8 sleeping actors on 2 cores: 2 bands (64 MiB each) 0.87-0.89 efficiency, 4 bands
# (32 MiB) 0.90-0.93, 8 bands 0.77 (8 reducer processes then compete for the 2 cores).
BAND_BYTES = 32 * 2**20
BANDS_PER_CPU = 2  # reducers mostly wait; more than this per core of their node and they compete


def band_count(channels: int, height: int, width: int, actors: int, cpus: int) -> int:
    """How many row bands (reducers) a latent gets: one per BAND_BYTES of blend, at most one per
    actor and BANDS_PER_CPU per CPU core of the node the reducers run on."""
    return max(1, min(actors, BANDS_PER_CPU * cpus, -(-channels * height * width * 8 // BAND_BYTES)))


@dataclass(frozen=True)
class StepStats:
    steps_run: int
    tiles_run: int


def _get(refs: list, what: str) -> list:
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayActorError as exc:
        raise _reducer_died(exc) from None
    except ray.exceptions.RayError as exc:
        raise task_failure(exc, what) from None


def _reducer_died(exc: Exception) -> RenderError:
    return RenderError(
        f"a band reducer died ({exc.__class__.__name__}); the store keeps every band's last committed step"
    )


def spawn_reducers(store: LatentStore, count: int) -> list:
    """`count` bare reducer actors, to be given their bands by `start_reducers`.

    Started early (beside the workers, before the store is made) so their imports overlap the
    model load. A `memory://` store exists only in this process: its reducers are made in
    `start_reducers`, in process. A local path's reducers run on the driver's node: reducers on
    other nodes would write their bands to another disk.
    """
    if store.protocol == "memory" or count <= 0:
        return []
    from gigacanvas.cluster import warm

    cls = reducer_actor_class()
    key = _reducer_key(store)
    if key[1] is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        cls = cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(key[1], soft=False))
    kept = warm.take(key, count)  # a process that keeps them: an earlier render's (warm.py)
    return kept + [cls.remote() for _ in range(count - len(kept))]


def _reducer_key(store: LatentStore) -> tuple:
    """What a kept reducer must match (cluster/warm.py): the node it was pinned to, for a local
    path's store (its bands go to this node's disk), or None (object storage: any node)."""
    import ray

    return ("reducer", ray.get_runtime_context().get_node_id() if store.location.local else None)


def start_reducers(store: LatentStore, grids: StepGrids, scheduler: Any, channels: int, spawned: Sequence = ()) -> list:
    """One reducer per band of the store, its scheduler copy shipped with it: the `spawned` ones
    first (more are spawned if the store has more bands; `stop_reducers` ends them all).

    Returns at once; `load_reducers` waits for them.
    """
    bands = range(len(store.bands))
    ticket = store.lease.ticket() if store.lease is not None else None
    if store.protocol == "memory":
        return [InProcessReducer(store.url, band, grids, scheduler, channels, ticket) for band in bands]
    reducers = list(spawned[: len(bands)]) + spawn_reducers(store, len(bands) - len(spawned))
    for band, reducer in zip(bands, reducers):
        reducer.setup.remote(store.url, band, grids, scheduler, channels, ticket)
    return reducers


def load_reducers(reducers: Sequence[Any], step: int) -> None:
    """Each reducer reads its band at `step`, a step every band can be read at; waits for them all."""
    _get([r.load.remote(step) for r in reducers], "reducer")


def stop_reducers(reducers: Sequence[Any]) -> None:
    import ray

    for reducer in reducers:
        if not isinstance(reducer, InProcessReducer):
            ray.kill(reducer, no_restart=True)


def finish_reducers(store: LatentStore, reducers: Sequence[Any], ok: bool) -> None:
    """The end of a render's reducers: kept for the next render if it went well and this process
    keeps its actors (cluster/warm.py), else stopped."""
    from gigacanvas.cluster import warm

    actors = [r for r in reducers if not isinstance(r, InProcessReducer)]
    if actors:
        stop_reducers(warm.unkept(_reducer_key(store), actors, actors, ok))


@dataclass
class _Band:
    """The driver's view of one band: the step its reducer holds and what it still waits for."""

    step: int
    jobs: tuple[int, ...]  # the jobs of its step reaching it
    missing: int = 0  # jobs of this step not yet added
    adding: set = field(default_factory=set)  # add refs in flight
    advancing: Any = None  # the advance ref in flight


class _Wavefront:
    """The loop's state; `run` is the whole of it, the rest are its events."""

    def __init__(self, pool, reducers, plan_step, steps, start, timesteps, guidance, on_step, on_tiles, regions=None):
        self.pool, self.reducers, self.plan_step = pool, reducers, plan_step
        self.regions = regions  # (step, batch) -> a worker's `regions` argument; None: no regional prompts
        self.steps, self.timesteps, self.guidance = steps, timesteps, guidance
        self.on_step, self.on_tiles = on_step, on_tiles
        self.done_step = start
        self.plans: dict[int, tuple[list, list[tuple[int, ...]]]] = {}  # step -> its jobs, and per band those reaching it
        self.bands = [_Band(start, js, missing=len(js)) for js in self._reach(start)]
        self.ready: list[tuple[int, int]] = [(start, job) for job in range(len(self._jobs(start)))]  # a heap: lowest step first
        self.windows: dict[tuple[int, int], list] = {}  # (step, job) -> its window refs, until added
        self.waiting: dict[tuple[int, int], set[int]] = {}  # (step, job) -> bands still missing it
        self.pieces: dict[tuple[int, int], list] = {}  # (step, job) -> its predictions' refs, per band
        self.events: dict[Any, tuple[str, Any]] = {}  # reducer refs -> what they finish

    def _plan(self, step: int) -> tuple[list, list[tuple[int, ...]]]:
        """Step `step`'s jobs (batch, cuts) and, per band, the jobs reaching it; kept while a band
        may still be at that step (shifted windows give every step its own grid)."""
        if step not in self.plans:
            jobs = self.plan_step(step)
            reach: list[list[int]] = [[] for _ in self.reducers]
            for job, (_, cuts) in enumerate(jobs):
                for band, _ in cuts:
                    reach[band].append(job)
            self.plans[step] = (jobs, [tuple(js) for js in reach])
            for old in [s for s in self.plans if s < self.done_step]:
                del self.plans[old]
        return self.plans[step]

    def _jobs(self, step: int) -> list:
        return self._plan(step)[0]

    def _reach(self, step: int) -> list[tuple[int, ...]]:
        return self._plan(step)[1]

    def run(self) -> None:
        import ray

        while self.done_step < self.steps:
            if self.ready:
                self.pool.check_alive()
            while self.ready and self.pool.has_room():
                self.pool.send(heapq.heappop(self.ready), self._predict)
            waits = [*self.pool.refs(), *self.events]
            if not waits:
                raise RenderError(f"the step loop stalled at step {self.done_step} with nothing running (a gigacanvas bug)")
            ready, _ = ray.wait(waits, num_returns=1, timeout=5.0)
            if ready:  # everything else already finished, in one sweep
                ready, _ = ray.wait(waits, num_returns=len(waits), timeout=0)
            for ref in ready:
                if self.pool.owns(ref):
                    try:
                        key, _, ok = self.pool.take(ref)
                    except ray.exceptions.RayActorError as exc:  # not the worker: a reducer it read from
                        raise _reducer_died(exc) from None
                    if ok:
                        self._predicted(key)
                    elif key is not None:
                        self.pieces.pop(key, None)
                        heapq.heappush(self.ready, key)  # its worker died: run it again
                else:
                    self._reducer_event(ref, *self.events.pop(ref))

    def _predict(self, worker: Any, key: tuple[int, int]) -> Any:
        step, job = key
        batch, cuts = self._jobs(step)[job]
        if key not in self.windows:
            # Sent now, after each band's advance to `step` finished and before its next advance.
            self.windows[key] = [self.reducers[band].window_rows.remote(batch) for band, _ in cuts]
            self.waiting[key] = {band for band, _ in cuts}
        extra = {} if self.regions is None else {"regions": self.regions(step, batch)}
        refs = worker.predict_bands.options(num_returns=len(cuts) + 1).remote(
            cuts, float(self.timesteps[step]), self.guidance, *self.windows[key], **extra
        )
        self.pieces[key] = refs[:-1]
        return refs[-1]  # the tile count: all the driver ever fetches from a worker

    def _predicted(self, key: tuple[int, int]) -> None:
        batch, cuts = self._jobs(key[0])[key[1]]
        for (band, _), piece in zip(cuts, self.pieces.pop(key)):
            if band in self.waiting[key]:
                ref = self.reducers[band].add.remote(batch, piece)
                self.bands[band].adding.add(ref)
                self.events[ref] = ("add", (band, key))
        self.on_tiles(len(batch))

    def _reducer_event(self, ref: Any, kind: str, what: Any) -> None:
        import ray

        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise _reducer_died(exc) from None
        except (ray.exceptions.ObjectLostError, ray.exceptions.OwnerDiedError) as exc:
            if kind != "add":
                raise task_failure(exc, "reducer") from None
            band, key = what  # the prediction was lost with its worker's node: predict it again
            self.bands[band].adding.discard(ref)
            self.pool.notify(f"gigacanvas: a prediction was lost ({exc.__class__.__name__}); its tiles run again")
            heapq.heappush(self.ready, key)
            return
        except ray.exceptions.RayError as exc:
            raise task_failure(exc, "reducer") from None
        if kind == "add":
            band, key = what
            state = self.bands[band]
            state.adding.discard(ref)
            self.waiting[key].discard(band)
            if not self.waiting[key]:
                del self.waiting[key], self.windows[key]
            state.missing -= 1
            self._try_advance(band)
        else:
            self._advanced(what, int(result))

    def _try_advance(self, band: int) -> None:
        state = self.bands[band]
        lowest = min(b.step for b in self.bands)
        if state.step >= self.steps or state.missing or state.adding or state.advancing is not None or state.step > lowest:
            return  # not every add is in, or it would commit two steps ahead of some band
        state.advancing = self.reducers[band].advance.remote()
        self.events[state.advancing] = ("advance", band)

    def _advanced(self, band: int, step: int) -> None:
        state = self.bands[band]
        state.advancing, state.step = None, step
        state.jobs = self._reach(step)[band] if step < self.steps else ()
        state.missing = len(state.jobs)
        lowest = min(b.step for b in self.bands)
        if lowest > self.done_step:
            self.done_step = lowest
            self.on_step(lowest)
            for other in range(len(self.bands)):
                self._try_advance(other)  # the lowest band moved: those ahead of it may commit
        if step >= self.steps:
            return
        for job in state.jobs:
            if all(self.bands[b].step == step for b, _ in self._jobs(step)[job][1]):
                heapq.heappush(self.ready, (step, job))  # every band under it holds `step` now


def start_noise(noise, scheduler: Any):
    """The first latent of a render from the seed's unit noise: times the scheduler's
    `init_noise_sigma` (1 for flow matching, sqrt(sigma_max^2 + 1) for a "leading" Euler), as the
    pipelines scale it: in float32 torch, so the product is theirs bit for bit."""
    import numpy as np
    import torch

    sigma = getattr(scheduler, "init_noise_sigma", 1.0)
    if not torch.is_tensor(sigma) and sigma == 1.0:
        return noise
    return np.ascontiguousarray((torch.from_numpy(noise) * sigma).numpy(), dtype=np.float32)


def denoise(
    store: LatentStore,
    pool: WorkerPool,
    reducers: Sequence[Any],
    grids: StepGrids,
    scheduler: Any,
    steps: int,
    tile_batch: int,
    guidance: float,
    on_step: Callable[[int], None] = lambda step: None,
    on_tiles: Callable[[int], None] = lambda n: None,
    regions: Any = None,
) -> StepStats:
    """Advance the store's latent from its committed step to `steps`; the reducers are loaded there.

    Each step's jobs come from that step's grid (`grids.grid(step)`, the same one the reducers
    blend by), so with shifted windows the batches still depend on the grid alone. `regions`
    (tiling/regions.py's RegionLayout; None: none) goes with each job and its windows to the
    worker, which predicts each tile once per prompt it touches (actors/regional.py)."""
    start = store.committed_step()

    def plan_step(step: int) -> list:
        grid = grids.grid(step)
        height = grid.height if grid.wrap_y else None  # a torus: a tile's rows are modulo the height
        return [(batch, batch_cuts(grid.windows, batch, store.bands, height)) for batch in grid.batches(tile_batch)]

    def regional(step: int, batch: Sequence[int]) -> tuple:
        windows = grids.grid(step).windows
        return regions, tuple(windows[i] for i in batch)

    _Wavefront(
        pool, reducers, plan_step, steps, start, scheduler.timesteps, guidance, on_step, on_tiles,
        None if regions is None else regional,
    ).run()
    return StepStats(steps_run=steps - start, tiles_run=sum(len(grids.grid(s)) for s in range(start, steps)))
