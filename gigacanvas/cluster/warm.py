"""Workers kept loaded between the renders of one process, when asked (`keep_workers`).

A render's actors spend seconds (the tiny model) to minutes (8 B parameters from disk) importing
torch and loading the model before the first tile; a process that renders several pictures (a
notebook, a service, a batch of posters) would pay that on every render. ComfyUI keeps its models
loaded between prompts; `gigacanvas.keep_workers()` does the same: a render that ends well parks
its alive workers here, and the next render of the same model on the same actor shape takes them,
loaded (a worker reloads only if the precision differs). The band reducers are kept alike (they
import torch and diffusers too): each render gives a kept reducer its band afresh (`setup`), so its
peak memory figure is its process's over the renders it served. The bits do not depend on any of
it: a worker is a pure function of its model, precision and thread count, and the conditioning
is set per render.

Off by default, because a parked worker keeps its GPU (or CPU slice) until it is taken, released
(`release_workers()`) or the process ends, and a one-shot command gains nothing from it. Parked
workers of another model or shape are killed before a render starts any (Ray would otherwise
leave its new actors pending behind them); a render that fails kills its workers, never parks them.
"""

from __future__ import annotations

from typing import Any

_keep = False
_parked: list[tuple[tuple, str, Any]] = []  # (key, Ray job (`_job`), actor), oldest first


def keep_workers(keep: bool = True) -> None:
    """Keep each successful render's loaded workers for the next render of this process; `False`
    stops keeping them and kills those parked."""
    global _keep
    _keep = bool(keep)
    if not keep:
        release_workers()


def _job() -> str:
    """This process's Ray job, on this cluster: a job id alone repeats (a new local cluster after
    `ray.shutdown()` numbers its first job as the last one did), the driver's node id does not."""
    import ray

    context = ray.get_runtime_context()
    return f"{context.get_node_id()}/{context.get_job_id()}"


def release_workers() -> int:
    """Kill every parked worker of this process's Ray job; returns how many. Those of an earlier
    job (a `ray.shutdown()` since) died with it and are forgotten."""
    import ray

    parked, _parked[:] = list(_parked), []
    if not parked or not ray.is_initialized():
        return 0
    job = _job()
    mine = [actor for _, owner, actor in parked if owner == job]
    for actor in mine:
        ray.kill(actor, no_restart=True)
    return len(mine)


def take(key: tuple, count: int) -> list:
    """Up to `count` parked actors made for `key` (its first item their kind: 'worker' or
    'reducer'); every other parked actor of that kind is killed first, so that the resources they
    hold are free for the actors the render starts itself."""
    import ray

    job = _job()
    mine = [(k, actor) for k, owner, actor in _parked if owner == job]
    kept = [actor for k, actor in mine if k == key][:count]
    taken = {actor._actor_id for actor in kept}
    dropped = [actor for k, actor in mine if k[0] == key[0] and actor._actor_id not in taken]
    _parked[:] = [(k, job, actor) for k, actor in mine if k[0] != key[0]]
    for actor in dropped:
        ray.kill(actor, no_restart=True)
    return kept


def park(key: tuple, actors: list) -> bool:
    """Keep `actors` (alive, made for `key`) for the next render, if keeping; False if not."""
    if not _keep or not actors:
        return False
    job = _job()
    there = {actor._actor_id for _, _, actor in _parked}
    _parked.extend((key, job, actor) for actor in actors if actor._actor_id not in there)
    return True


def unkept(key: tuple, started: list, alive: list, ok: bool) -> list:
    """The end of a render's actors of `key`: its `alive` ones are parked if it went well (and this
    process keeps them); returns those of `started` it must stop itself (the rest, the dead, the
    replaced, all of them when not kept)."""
    if ok:
        park(key, list(alive))
    kept = {actor._actor_id for _, _, actor in _parked}
    return [actor for actor in started if actor._actor_id not in kept]
