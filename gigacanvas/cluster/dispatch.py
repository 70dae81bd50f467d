"""Worker actors as a pool: each job goes to a worker with room, and a dead worker's jobs run again.

Hand-written rather than `ray.util.ActorPool`: the step loop must know which job each result
belongs to (to hand it to the reducers that blend it in tile order), must wait on worker results
and reducer events in one `ray.wait`, and must outlive a worker that dies (ActorPool re-raises
its error and loses the job). Each worker keeps two jobs in flight so it never idles between
calls; a faster worker empties its queue sooner and so is handed more jobs (mixed GPU kinds).

A worker is dead when a call to it fails with `RayActorError` naming that worker (its process was
killed, its node was removed or went silent); one naming another actor means an input of the job
died with its actor (a reducer), which is re-raised for the caller. The dead worker's jobs are handed back to be run again on the others, it is told
once on stderr, and a replacement is started when the caller gave a way to make one; the
replacement joins the pool once it has loaded the model, or never if the cluster cannot place it.
Pixels do not depend on which worker ran a job (fixed thread count, fixed precision), so a rerun
gives the same bits. A job that has killed `MAX_TRIES` workers (a tile that runs every worker out
of memory) ends the render instead of killing the whole pool.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from gigacanvas.errors import GigacanvasError, RenderError

IN_FLIGHT_PER_WORKER = 2
MAX_TRIES = 3
# How long a render with no live worker waits for a replacement before it stops (resumable).
REPLACE_TIMEOUT_S = float(os.environ.get("GIGACANVAS_ACTOR_START_TIMEOUT", "300"))

# (the render's conditioning) -> (a new worker, a ref that is ready once it has loaded and can work)
Replace = Callable[[Any], "tuple[Any, Any]"]


def task_failure(exc: Exception, what: str) -> GigacanvasError:
    """One line for a remote call that raised: the cause's own words, never a remote traceback."""
    import ray

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, GigacanvasError):
            return cause
        return RenderError(f"a {what} failed: {cause.__class__.__name__}: {cause}")
    return RenderError(f"a {what} failed: {(str(exc).strip().splitlines() or [exc.__class__.__name__])[-1]}")


class WorkerPool:
    """The render's worker actors; `send` jobs while `has_room`, hand finished refs to `take`."""

    def __init__(self, workers: Sequence[Any], notify: Callable[[str], None] = lambda line: None, replace: Replace | None = None):
        self.alive: list[Any] = list(workers)
        self.started: list[Any] = list(workers)  # every actor this pool knew: all are stopped at the end
        self.notify = notify
        self.replace = replace  # set once the model's precision is known
        self._replacements_left = len(workers)  # a crash loop must not start actors forever
        self._load: Counter[int] = Counter()
        self._running: dict[Any, tuple[Any, Hashable]] = {}
        self._joining: dict[Any, Any] = {}
        self._tries: Counter[Hashable] = Counter()
        self._no_worker_since: float | None = None
        self._conditioning: Any = None

    def set_conditioning(self, cond: Any) -> None:
        """Give every worker the render's prompt conditioning (and any replacement, later)."""
        import ray

        self._conditioning = cond
        for ref, worker in [(w.set_conditioning.remote(cond), w) for w in list(self.alive)]:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._bury(worker, exc)  # died since its last job: the others go on
            except ray.exceptions.RayError as exc:
                raise task_failure(exc, "worker") from None

    def has_room(self) -> bool:
        return any(self._load[id(w)] < IN_FLIGHT_PER_WORKER for w in self.alive)

    def send(self, job: Hashable, call: Callable[[Any, Hashable], Any]) -> None:
        """Start `call(worker, job) -> ObjectRef` on the least busy worker (`has_room` must be true)."""
        worker = min(self.alive, key=lambda w: self._load[id(w)])
        self._load[id(worker)] += 1
        self._running[call(worker, job)] = (worker, job)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def refs(self) -> list:
        """What the caller's `ray.wait` should include for this pool."""
        return [*self._running, *self._joining]

    def owns(self, ref: Any) -> bool:
        return ref in self._running or ref in self._joining

    def take(self, ref: Any) -> tuple[Hashable, Any, bool]:
        """A finished ref of `refs()`: (job, result, True) on success, (job, None, False) when the job
        must be sent again (its worker died), (None, None, False) for a replacement that joined."""
        import ray

        if ref in self._joining:
            self._join(ref)
            return None, None, False
        worker, job = self._running.pop(ref)
        self._load[id(worker)] -= 1
        try:
            return job, ray.get(ref), True
        except ray.exceptions.RayActorError as exc:
            died = getattr(exc, "actor_id", None)
            if died is not None and died != worker._actor_id.hex():
                raise  # an actor the job's inputs came from died (a reducer): the caller's to handle
            self._tries[job] += 1
            if self._tries[job] >= MAX_TRIES:
                raise RenderError(
                    f"job {job} was running on {MAX_TRIES} actors that each died ({exc.__class__.__name__}); "
                    "it may run them out of memory: lower --tile-batch or the tile size"
                ) from None
            self._bury(worker, exc)
            return job, None, False
        except ray.exceptions.RayError as exc:
            raise task_failure(exc, "worker") from None

    def _bury(self, worker: Any, exc: Exception) -> None:
        import ray

        if worker not in self.alive:
            return  # its other in-flight job: already told
        self.alive.remove(worker)
        ray.kill(worker, no_restart=True)
        started = None
        if self.replace is not None and self._replacements_left > 0:
            self._replacements_left -= 1
            started = self.replace(self._conditioning)
        if started is not None:
            actor, ready = started
            self.started.append(actor)
            self._joining[ready] = actor
        others = f"the other {len(self.alive)}" if self.alive else "a replacement once it starts"
        self.notify(
            f"gigacanvas: a worker actor died ({exc.__class__.__name__}); its tiles run again on {others}"
            + (" (a replacement is starting)" if started is not None and self.alive else "")
        )

    def _join(self, ref: Any) -> None:
        import ray

        actor = self._joining.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            self.notify(f"gigacanvas: the replacement worker could not start ({task_failure(exc, 'replacement')}); going on without it")
            return
        if self._conditioning is not None:  # it started before the prompt was encoded
            actor.set_conditioning.remote(self._conditioning)  # before any job: one caller's calls keep their order
        self.alive.append(actor)
        self.notify(f"gigacanvas: a replacement worker joined ({len(self.alive)} working)")

    def check_alive(self) -> None:
        """Raise if no worker is left and none is coming within REPLACE_TIMEOUT_S: never wait forever."""
        if self.alive:
            self._no_worker_since = None
            return
        if not self._joining:
            raise RenderError("every worker actor died and none could be replaced; the store keeps the last committed step")
        now = time.monotonic()
        self._no_worker_since = self._no_worker_since or now
        if now - self._no_worker_since > REPLACE_TIMEOUT_S:
            raise RenderError(
                f"every worker actor died and no replacement started within {REPLACE_TIMEOUT_S:g} s "
                "(the cluster has no room for one); the store keeps the last committed step"
            )

    def map(self, jobs: Iterable[Hashable], call: Callable[[Any, Hashable], Any], on_done: Callable[[Hashable, Any], None]) -> None:
        """Run every job (re-running those of dead workers); `on_done(job, result)` in completion order."""
        import ray

        queue = list(jobs)[::-1]
        while queue or self.busy:
            if queue:
                self.check_alive()
            while queue and self.has_room():
                self.send(queue.pop(), call)
            ready, _ = ray.wait(self.refs(), num_returns=1, timeout=5.0)
            for ref in ready:
                job, result, ok = self.take(ref)
                if ok:
                    on_done(job, result)
                elif job is not None:
                    queue.append(job)
