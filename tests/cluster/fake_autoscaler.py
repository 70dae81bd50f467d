"""A stand-in for Ray's autoscaler v2 as the GCS sees it, for tests: its flag, and its state
reported every few hundred ms, with the requests it finds infeasible."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def fake_autoscaler(infeasible: list[dict[str, float]] = (), every_s: float = 0.2,
                    on_tick: Callable[[int], None] | None = None) -> Iterator[None]:
    """While the block runs, the joined cluster looks autoscaled (v2); `infeasible` bundles are
    reported as no node type can hold them. `on_tick(n)` runs at each report (e.g. add a node)."""
    import ray
    from ray._raylet import GcsClient
    from ray.core.generated import autoscaler_pb2

    gcs = GcsClient(ray.get_runtime_context().gcs_address)
    namespace = ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode()
    flag = ray._raylet.GCS_AUTOSCALER_V2_ENABLED_KEY.encode()
    stop = threading.Event()

    # the GCS keeps the newest state only: count on from what an earlier stand-in reported
    version = autoscaler_pb2.GetClusterStatusReply.FromString(gcs.get_cluster_status()).autoscaling_state.autoscaler_state_version

    def report() -> None:
        nonlocal version
        while not stop.is_set():
            version += 1
            state = autoscaler_pb2.AutoscalingState(autoscaler_state_version=version)
            for bundle in infeasible:
                state.infeasible_resource_requests.add().resources_bundle.update(bundle)
            gcs.report_autoscaling_state(state.SerializeToString())
            if on_tick is not None:
                on_tick(version)
            stop.wait(every_s)

    gcs.internal_kv_put(flag, b"1", True, namespace=namespace)
    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        stop.wait(2 * every_s)  # a state is reported before the block asks for one
        yield
    finally:
        stop.set()
        thread.join()
        gcs.internal_kv_del(flag, False, namespace=namespace)
