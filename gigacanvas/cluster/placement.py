"""Connecting to Ray and placing the worker actors, failing fast when they can never fit.

Ray queues an actor whose resources no node has and waits forever. Before creating any actor we
compare the request with each alive node's total resources and refuse, with what is missing, a
request that could never be placed; a request that fits but cannot start in time (a busy
cluster) ends with a timeout instead of a hang.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from gigacanvas.errors import RenderError, UsageError

START_TIMEOUT_S = float(os.environ.get("GIGACANVAS_ACTOR_START_TIMEOUT", "300"))
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ActorShape:
    """The resources one worker reserves and the torch threads it runs."""

    num_cpus: float
    num_gpus: float
    threads: int

    def describe(self) -> str:
        return f"{self.num_gpus:g} GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"


def _check_reachable(address: str) -> None:
    """Ray retries an unanswered address for minutes; a TCP probe says at once that nobody is there."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address {address!r} is not host:port (or ray://host:port, auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); check --address or RAY_ADDRESS") from None


def connect(address: str | None) -> None:
    """Join the given cluster, RAY_ADDRESS's, or start a local one; reuse an open connection."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise UsageError(f"cannot connect to the Ray cluster at {address or 'a new local instance'} ({exc})") from exc


def _nodes() -> list[dict[str, float]]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def plan_shape(actors: int | None, cpus_per_actor: float) -> tuple[int, ActorShape]:
    """One GPU per actor where the cluster has GPUs, else a CPU slice; and how many actors."""
    nodes = _nodes()
    gpus = sum(n.get("GPU", 0) for n in nodes)
    if gpus:
        shape = ActorShape(num_cpus=1, num_gpus=1, threads=1)
        default = int(gpus)
    else:
        shape = ActorShape(num_cpus=cpus_per_actor, num_gpus=0, threads=max(1, int(cpus_per_actor)))
        default = 2
    count = actors or default
    check_capacity(count, shape, nodes)
    return count, shape


def check_capacity(count: int, shape: ActorShape, nodes: list[dict[str, float]]) -> None:
    """Refuse `count` actors of `shape` if the alive nodes could never hold them all at once."""
    need = {"CPU": shape.num_cpus, "GPU": shape.num_gpus}
    fits = 0
    for node in nodes:
        per_node = [int(node.get(k, 0) / v + 1e-9) for k, v in need.items() if v > 0]
        fits += min(per_node) if per_node else 0
    if fits < count:
        totals = {k: sum(n.get(k, 0) for n in nodes) for k in need}
        have = ", ".join(f"{totals[k]:g} {k}" for k in need if need[k] > 0)
        raise UsageError(
            f"--actors {count} needs {shape.describe()} each but the cluster ({len(nodes)} node(s), {have}) "
            f"can hold at most {fits}; lower --actors"
            + ("" if shape.num_gpus else " or --cpus-per-actor")
            + " or add nodes"
        )


def _get(refs: list, what: str, workers: list) -> list:
    """`ray.get` that ends in one clear error instead of a hang or a remote traceback."""
    import ray

    from gigacanvas.errors import GigacanvasError

    try:
        return ray.get(refs, timeout=START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        stop_workers(workers)
        raise RenderError(f"{what} did not finish within {START_TIMEOUT_S:g} s; the cluster is busy with other work") from None
    except ray.exceptions.RayTaskError as exc:
        stop_workers(workers)
        if isinstance(exc.cause, GigacanvasError):
            raise exc.cause from None
        cause = exc.cause if exc.cause is not None else exc
        raise RenderError(f"{what} failed: {cause.__class__.__name__}: {cause}") from None
    except ray.exceptions.RayError as exc:
        stop_workers(workers)
        raise RenderError(f"{what} failed: {str(exc).splitlines()[-1]}") from None


def start_workers(info, count: int, shape: ActorShape) -> tuple[list, list]:
    """Create `count` workers and collect their device capabilities; no weights load yet."""
    from gigacanvas.actors.worker import worker_actor_class

    cls = worker_actor_class().options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus)
    workers = [cls.remote(info, shape.threads) for _ in range(count)]
    caps = _get([w.capabilities.remote() for w in workers], f"starting {count} actor(s) of {shape.describe()}", workers)
    return workers, caps


def load_workers(workers: list, precision: str) -> None:
    """Load the model on every worker in `precision`, failing with the first worker's error."""
    _get([w.load.remote(precision) for w in workers], "loading the model", workers)


def stop_workers(workers: list) -> None:
    import ray

    for worker in workers:
        ray.kill(worker, no_restart=True)
