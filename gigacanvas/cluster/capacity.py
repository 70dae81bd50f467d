"""Actors beyond the nodes alive now: wait for an autoscaler that can add them, or refuse.

Ray queues an actor no node can hold and waits forever, so a fixed cluster that cannot hold the
render's actors is refused at once (placement.check_capacity). A cluster whose autoscaler can add
nodes is another matter: there the render asks the autoscaler for the actors' resources up front
(`ray.autoscaler.sdk.request_resources`, Ray's public call), says what it waits for and for how
long (GIGACANVAS_ACTOR_START_TIMEOUT), prints a line every PROGRESS_S while it waits, and refuses
as soon as the autoscaler reports the request infeasible: no worker type can hold an actor of this
shape, or not as many as asked (its `max_workers` / `maxReplicas`).

Which autoscalers: Ray's autoscaler v2, the one `ray_config.yaml` and the KubeRay manifests run.
It writes its flag to the GCS at start and reports its state there every iteration, with the
requests and constraints no node type can satisfy (`infeasible_*`): that verdict is what makes
"could never be placed" knowable. Autoscaler v1 publishes no such verdict, and the v1 monitor runs
on every head, a fixed cluster's too (with a read-only provider), so its presence says nothing
about nodes to come: with v1 a request beyond the alive nodes is refused as on a fixed cluster,
with a message that says how to run v2. Hand-written over Ray's GCS calls: Ray has no public
"can this ever be placed" query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from gigacanvas.errors import RenderError, UsageError

PROGRESS_S = float(os.environ.get("GIGACANVAS_WAIT_PROGRESS_S", "30"))
POLL_S = 2.0  # how often the autoscaler's verdict is read while waiting


def _gcs():
    import ray
    from ray._raylet import GcsClient

    return GcsClient(ray.get_runtime_context().gcs_address)


def autoscaling() -> bool:
    """Whether an autoscaler that reports its verdicts (v2) runs for this cluster."""
    import ray
    from ray.core.generated import autoscaler_pb2

    try:
        flag = _gcs().internal_kv_get(
            ray._raylet.GCS_AUTOSCALER_V2_ENABLED_KEY.encode(),
            namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode(),
        )
        if flag != b"1":
            return False
        reply = autoscaler_pb2.GetClusterStatusReply.FromString(_gcs().get_cluster_status())
    except Exception:  # noqa: BLE001 - an older GCS or a refused call: no verdicts to wait on
        return False
    return reply.autoscaling_state.autoscaler_state_version > 0


def _infeasible(bundle: dict[str, float]) -> bool:
    """Whether the autoscaler's latest state says no node type can hold `bundle` (or as many as asked)."""
    from ray.core.generated import autoscaler_pb2

    state = autoscaler_pb2.GetClusterStatusReply.FromString(_gcs().get_cluster_status()).autoscaling_state

    def ours(request) -> bool:
        return {k: v for k, v in request.resources_bundle.items() if v} == bundle

    if any(ours(r) for r in state.infeasible_resource_requests):
        return True
    return any(ours(r.request) for c in state.infeasible_cluster_resource_constraints for r in c.resource_requests)


def request(bundle: dict[str, float], count: int) -> None:
    """Ask the autoscaler for `count` bundles (scale up now, not after the actors queue); `count`
    0 withdraws the request, so the cluster may shrink again after the render."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[bundle] * count)


def wait_placed(
    refs: list, bundle: dict[str, float], described: str, timeout_s: float, notify: Callable[[str], None]
) -> None:
    """Wait for every actor's first call (`refs`) while the autoscaler adds nodes.

    Ends with a usage error as soon as the autoscaler reports the request infeasible, and with a
    render error at `timeout_s`; says how many have started every PROGRESS_S.
    """
    import ray

    count = len(refs)
    start = last_said = time.monotonic()
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        if not pending:
            return
        now = time.monotonic()
        if _infeasible(bundle):
            raise UsageError(
                f"{count} actor(s) of {described} cannot be placed: the autoscaler reports that no worker type "
                "(or not as many of them as its max allows) can hold them; lower --actors or add a worker type"
            )
        if now - start >= timeout_s:
            raise RenderError(
                f"only {count - len(pending)} of {count} actor(s) of {described} started within {timeout_s:g} s "
                "(GIGACANVAS_ACTOR_START_TIMEOUT) while the autoscaler added nodes; check `ray status` and the "
                "autoscaler's log, or lower --actors"
            )
        if now - last_said >= PROGRESS_S:
            last_said = now
            notify(
                f"gigacanvas: waiting for nodes: {count - len(pending)} of {count} actor(s) started, "
                f"{now - start:.0f} s of up to {timeout_s:g} s"
            )
