"""Connecting to Ray and placing the worker actors, failing fast when they can never fit.

Which cluster is explicit: `--address` (or RAY_ADDRESS) names one, `auto` joins the one running on
this machine, and no address at all starts a new local cluster. (Ray's own default joins whatever
its `ray_current_cluster` file names: silently, or for minutes of retries when that cluster has
died.) Before `ray.init` the address gets one gRPC question with a deadline, the GCS's
GetClusterId or Ray Client's ping, because `ray.init` retries for minutes a port that answers
nothing or speaks something else. Hand-written: Ray has no bounded connect.

Ray queues an actor whose resources no node has and waits forever. Before creating any actor we
compare the request with each alive node's total resources and refuse, with what is missing, a
request that could never be placed, unless an autoscaler may add nodes (cluster/capacity.py:
then we wait for them, saying so, and refuse what it reports infeasible); a request that fits but
cannot start in time (a busy cluster) ends with a timeout instead of a hang.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gigacanvas.cluster import signals
from gigacanvas.errors import RenderError, UsageError

START_TIMEOUT_S = float(os.environ.get("GIGACANVAS_ACTOR_START_TIMEOUT", "300"))
START_TRIES = 3  # starts of a worker that dies before its first answer (placed on a node just gone)
CONNECT_TIMEOUT_S = float(os.environ.get("GIGACANVAS_CONNECT_TIMEOUT", "10"))
# A node's first fetch of a model URL is a download of the whole model (SD3.5 Large: ~30 GB).
FETCH_TIMEOUT_S = float(os.environ.get("GIGACANVAS_MODEL_FETCH_TIMEOUT", "3600"))


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


def _check_answers(address: str) -> None:
    """Ask `address` one Ray question within CONNECT_TIMEOUT_S: a silent port or another server fails here.

    A GCS answers GetClusterId and Ray Client (ray://) answers a ping, both within milliseconds;
    an UNAUTHENTICATED reply is still Ray, one that wants a token we did not send.
    """
    import grpc
    from ray._private.authentication.authentication_utils import is_token_auth_enabled
    from ray._private.grpc_utils import init_grpc_channel
    from ray._private.ray_constants import GLOBAL_GRPC_OPTIONS

    client = address.startswith("ray://")
    # Ray's own channel: its TLS settings, its token when token auth is on, its proxy choice.
    channel = init_grpc_channel(address.removeprefix("ray://"), options=list(GLOBAL_GRPC_OPTIONS))
    try:
        if client:
            from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

            ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
            ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(ping, timeout=CONNECT_TIMEOUT_S)
        else:
            from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

            stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED and is_token_auth_enabled():
            raise UsageError(
                f"the Ray cluster at {address} refused our token; use its head node's ~/.ray/auth_token "
                "(there, or in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
            ) from None
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise UsageError(
                f"the Ray cluster at {address} wants token authentication; set RAY_AUTH_MODE=token "
                "with its head node's ~/.ray/auth_token copied here or in RAY_AUTH_TOKEN"
            ) from None
        if code == grpc.StatusCode.UNIMPLEMENTED and client:
            raise UsageError(f"{address} is a gRPC server but not Ray Client; for a GCS port, drop ray://") from None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise UsageError(
                f"{address} is a gRPC server but not a Ray GCS; give the GCS port (6379 unless "
                "`ray start --head --port` said otherwise) or ray://host:10001 for Ray Client"
            ) from None
        raise UsageError(
            f"nothing at {address} answers as a Ray cluster within {CONNECT_TIMEOUT_S:g} s; check --address or RAY_ADDRESS"
        ) from None
    finally:
        channel.close()


def _running_cluster() -> str:
    """The address `--address auto` means: RAY_ADDRESS, Ray's ray_current_cluster file, or a local GCS."""
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )
    from ray._private.services import get_ray_address_from_environment

    try:
        address = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise UsageError(
            "--address auto found no running Ray cluster on this machine; start one with `ray start --head` "
            "or leave out --address for a new local cluster"
        ) from None
    # As `ray.init(address="auto")` does: the local cluster's own token is ours to send.
    with _no_token_notice():
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    return address


@contextmanager
def _no_token_notice() -> Iterator[None]:
    """Ray warns that token authentication is on, its default, at every start: news to nobody here."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def connect(address: str | None) -> str:
    """Join `address` (or RAY_ADDRESS's cluster; `auto`: the one running here), else start a new local one.

    Returns one line saying which cluster, for the render to print. With Ray already initialised
    (a notebook, a test, a Ray job's driver) it joins nothing and says which cluster it uses.
    """
    import ray

    if ray.is_initialized():
        return f"using the Ray cluster this process already joined ({_size(nodes=True)})"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "auto":
        address = _running_cluster()
        try:
            _check_reachable(address)
            _check_answers(address)
        except UsageError as exc:
            raise UsageError(f"--address auto chose {address}, Ray's current cluster on this machine: {exc}") from None
    elif address != "local":
        _check_reachable(address)
        _check_answers(address)
    try:
        with _no_token_notice():
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
    except SystemExit as exc:  # ray.init's own SIGTERM handler, live until we reinstall ours
        raise signals.from_ray_init(exc) from None
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = "a new local instance" if address == "local" else address
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[-1]
        raise UsageError(f"cannot connect to the Ray cluster at {where} ({reason})") from None
    finally:
        signals.reinstall()  # the core worker replaced our SIGTERM handler with a stack dump
    if address == "local":
        return f"started a new local Ray cluster ({_size(nodes=False)})"
    return f"joined the Ray cluster at {address} ({_size(nodes=True)})"


def _size(nodes: bool) -> str:
    """'3 nodes, 8 GPUs' or '2 CPUs': what the renders will be placed on."""
    import ray

    resources = ray.cluster_resources()
    kind = "GPU" if resources.get("GPU") else "CPU"
    amount = resources.get(kind, 0)
    parts = [f"{amount:g} {kind}{'' if amount == 1 else 's'}"]
    if nodes:
        count = len(_nodes())
        parts.insert(0, f"{count} node{'' if count == 1 else 's'}")
    return ", ".join(parts)


def _nodes() -> list[dict[str, float]]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def plan_shape(actors: int | None, cpus_per_actor: float) -> tuple[int, ActorShape]:
    """One GPU per actor where the cluster has GPUs, else a CPU slice; and how many actors."""
    from gigacanvas.cluster import capacity

    nodes = _nodes()
    gpus = sum(n.get("GPU", 0) for n in nodes)
    if gpus:
        shape = ActorShape(num_cpus=1, num_gpus=1, threads=1)
        default = int(gpus)
    else:
        shape = ActorShape(num_cpus=cpus_per_actor, num_gpus=0, threads=max(1, int(cpus_per_actor)))
        default = 2
    count = actors or default
    if fits(shape, nodes) < count and not capacity.autoscaling():
        check_capacity(count, shape, nodes)
    return count, shape


def fits(shape: ActorShape, nodes: list[dict[str, float]]) -> int:
    """How many actors of `shape` the `nodes` could hold at once."""
    need = {"CPU": shape.num_cpus, "GPU": shape.num_gpus}
    held = 0
    for node in nodes:
        per_node = [int(node.get(k, 0) / v + 1e-9) for k, v in need.items() if v > 0]
        held += min(per_node) if per_node else 0
    return held


def check_capacity(count: int, shape: ActorShape, nodes: list[dict[str, float]]) -> None:
    """Refuse `count` actors of `shape` if the alive nodes could never hold them all at once."""
    held = fits(shape, nodes)
    if held < count:
        need = {"CPU": shape.num_cpus, "GPU": shape.num_gpus}
        totals = {k: sum(n.get(k, 0) for n in nodes) for k in need}
        have = ", ".join(f"{totals[k]:g} {k}" for k in need if need[k] > 0)
        raise UsageError(
            f"--actors {count} needs {shape.describe()} each but the cluster ({len(nodes)} node(s), {have}) "
            f"can hold at most {held}; lower --actors"
            + ("" if shape.num_gpus else " or --cpus-per-actor")
            + " or add nodes (an autoscaling cluster waits for them with Ray's autoscaler v2)"
        )


def _timed_out(what: str, workers: list, timeout: float, why: str = "the cluster is busy with other work") -> RenderError:
    stop_workers(workers)
    return RenderError(f"{what} did not finish within {timeout:g} s; {why}")


def _get(refs: list, what: str, workers: list, timeout: float | None = None, why: str = "the cluster is busy with other work") -> list:
    """`ray.get` that ends in one clear error instead of a hang or a remote traceback."""
    import ray

    from gigacanvas.errors import GigacanvasError

    timeout = START_TIMEOUT_S if timeout is None else timeout
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise _timed_out(what, workers, timeout, why) from None
    except ray.exceptions.RayTaskError as exc:
        stop_workers(workers)
        if isinstance(exc.cause, GigacanvasError):
            raise exc.cause from None
        cause = exc.cause if exc.cause is not None else exc
        raise RenderError(f"{what} failed: {cause.__class__.__name__}: {cause}") from None
    except ray.exceptions.RayError as exc:
        stop_workers(workers)
        raise RenderError(f"{what} failed: {str(exc).splitlines()[-1]}") from None


def _first_answers(start: Callable[[], Any], workers: list, refs: list, what: str, notify) -> list:
    """The workers' first answers (`refs`); one that died before answering is started again.

    Ray lists a node for seconds after it died and may place a new actor there, which is then
    cancelled: that is the cluster changing under the render, not the render failing, so such a
    worker is replaced, START_TRIES times at most. Errors of another kind end as `_get` ends them.
    """
    import ray

    for tries in range(1, START_TRIES + 1):
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=START_TIMEOUT_S)
        if pending:
            raise _timed_out(what, workers, START_TIMEOUT_S)
        dead = []
        for index, ref in enumerate(refs):
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                dead.append(index)
            except ray.exceptions.RayError:
                return _get(refs, what, workers)  # its one line
        if not dead:
            return ray.get(refs)
        if tries == START_TRIES:
            break
        notify(f"gigacanvas: {len(dead)} actor(s) died before they started (a node going away?); starting them again")
        for index in dead:
            workers[index] = start()
            refs[index] = workers[index].capabilities.remote()
    stop_workers(workers)
    raise RenderError(f"{what} failed: actors died before they started, {START_TRIES} times; check `ray status`")


def start_workers(info, count: int, shape: ActorShape, notify=lambda line: None) -> tuple[list, list]:
    """Create `count` workers, collect their device capabilities and have each make its node's copy
    of the model ready (fetched, or checked readable, and fingerprinted); no weights load yet.

    A node that cannot read the model fails here, before the store is written, in one line. More
    than the alive nodes hold (plan_shape let it through: an autoscaler runs) waits for the
    autoscaler's nodes, saying so (cluster/capacity.py).
    """
    from gigacanvas.actors.worker import worker_actor_class
    from gigacanvas.cluster import capacity, warm

    cls = worker_actor_class().options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus)
    kept = warm.take(("worker", info, shape), count)  # a process that keeps workers: loaded ones first (warm.py)
    held = fits(shape, _nodes())
    short = held < count
    bundle = {k: v for k, v in (("CPU", shape.num_cpus), ("GPU", shape.num_gpus)) if v}
    if short:
        capacity.request(bundle, count)
        notify(
            f"gigacanvas: the cluster holds {held} of {count} actor(s) of {shape.describe()} now; "
            f"waiting up to {START_TIMEOUT_S:g} s for the autoscaler to add nodes (GIGACANVAS_ACTOR_START_TIMEOUT)"
        )
    workers = kept + [cls.remote(info, shape.threads) for _ in range(count - len(kept))]
    refs = [w.capabilities.remote() for w in workers]
    what = f"starting {count} actor(s) of {shape.describe()}"
    if short:
        try:
            capacity.wait_placed(refs, bundle, shape.describe(), START_TIMEOUT_S, notify)
        except BaseException:
            stop_workers(workers)
            raise
        finally:
            capacity.request(bundle, 0)  # placed or given up: the nodes are the actors' now
    caps = _first_answers(lambda: cls.remote(info, shape.threads), workers, refs, what, notify)
    _get(
        [w.prepare.remote() for w in workers], "getting the model onto every node", workers, FETCH_TIMEOUT_S,
        "a slow download? raise GIGACANVAS_MODEL_FETCH_TIMEOUT",
    )
    return workers, caps


def load_workers(workers: list, precision: str) -> None:
    """Load the model on every worker in `precision`, failing with the first worker's error."""
    _get([w.load.remote(precision) for w in workers], "loading the model", workers)


def replacer(info, shape: ActorShape, precision: str):
    """How a pool starts a worker like the others when one dies: same shape, threads, precision.

    The new actor is pending until the cluster can place it (a node coming back, an autoscaler);
    the pool goes on without it meanwhile and never waits on it alone for long.
    """
    from gigacanvas.actors.worker import worker_actor_class

    cls = worker_actor_class().options(num_cpus=shape.num_cpus, num_gpus=shape.num_gpus)

    def replace(cond):
        actor = cls.remote(info, shape.threads)
        return actor, actor.join.remote(precision, cond)

    return replace


def stop_workers(workers: list) -> None:
    import ray

    for worker in workers:
        ray.kill(worker, no_restart=True)


def finish_workers(started: list, alive: list, info, shape: ActorShape, ok: bool) -> None:
    """The end of a render's workers: parked for the next render if it went well and this process
    keeps workers (cluster/warm.py), else stopped; the dead and the replaced are stopped always."""
    from gigacanvas.cluster import warm

    stop_workers(warm.unkept(("worker", info, shape), started, alive, ok))
