"""Feeding a fixed list of jobs to worker actors and collecting results as they finish.

Hand-written rather than `ray.util.ActorPool` because the caller needs to know which job each
result belongs to (to blend it in tile order) and which actor failed (to report it, and later to
retry its jobs elsewhere). Each worker keeps two jobs in flight so it never idles between calls.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Sequence

from gigacanvas.errors import RenderError

IN_FLIGHT_PER_WORKER = 2


def dispatch(
    workers: Sequence[Any],
    jobs: Sequence[Any],
    submit: Callable[[Any, Any], Any],
    on_done: Callable[[Any, Any], None],
) -> None:
    """Run `submit(worker, job) -> ObjectRef` for every job; call `on_done(job, result)` on each.

    Results arrive in completion order; callers that need a fixed order (the blenders) impose it.
    """
    import ray

    queue = deque(jobs)
    running: dict[Any, Any] = {}

    def feed(worker: Any) -> None:
        if queue:
            job = queue.popleft()
            running[submit(worker, job)] = (worker, job)

    for _ in range(IN_FLIGHT_PER_WORKER):
        for worker in workers:
            feed(worker)
    while running:
        (ref,), _ = ray.wait(list(running), num_returns=1)
        worker, job = running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise RenderError(f"a worker actor died ({exc.__class__.__name__}); the store keeps the last step") from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise RenderError(f"a worker failed: {cause.__class__.__name__}: {cause}") from None
        on_done(job, result)
        feed(worker)
