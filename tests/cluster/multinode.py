"""Renders on a simulated three-node Ray cluster, with faults injected mid-step; run by test_multinode.py.

`python -m tests.cluster.multinode OUT_DIR TINY_MODEL` starts a `ray.cluster_utils.Cluster` (a
head and two worker nodes in processes of this machine), renders the scenarios below into
OUT_DIR (the reducer-killed render's store on a loopback S3 server, moto, started first so that
every node sees it) and writes OUT_DIR/results.json: per scenario the PNG, the notices the render printed,
the error it ended with (if any) and the nodes its workers ran on. Its own process, because a
process joins one Ray cluster and the other tests share a single-node one.

Faults are injected from inside the step loop (after the Nth prediction has arrived), so they
hit while workers hold tiles, never between steps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from tests.cluster.fake_autoscaler import fake_autoscaler
from tests.helpers import s3_bucket

# Like the session fixture: tiles of 256 px on a 512 x 320 canvas, 6 to 8 tiles per step (shifted windows).
TINY = {"prompt": "a harbour at night", "negative_prompt": "blurry", "width": 512, "height": 320, "steps": 2,
        "guidance": 4.5, "seed": 5, "tile_size": 256, "tile_overlap": 64, "tile_batch": 2, "vae_tile_size": 128,
        "cpus_per_actor": 1.0}
# The simulated model sleeps per tile, so workers are surely inside a tile call when a fault hits.
FAULTS = {"prompt": "faults", "width": 768, "height": 768, "steps": 3, "seed": 9, "tile_size": 256,
          "tile_overlap": 64, "tile_batch": 1, "vae_tile_size": 256, "cpus_per_actor": 1.0, "actors": 3,
          "model": "simulated:0.15"}


def _processes(title: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith(title):
            found.append(proc)
    return found


def _worker_nodes(workers) -> list[str]:
    import ray

    return ray.get([w.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()) for w in workers])


def main(out: Path, tiny_model: str) -> None:
    with contextlib.ExitStack() as stack:
        _main(out, tiny_model, stack)


def _main(out: Path, tiny_model: str, stack: contextlib.ExitStack) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from gigacanvas import RenderSpec, render
    from gigacanvas.cluster import placement, steploop
    from gigacanvas.errors import GigacanvasError

    # A loopback S3 server first: the nodes' processes inherit its endpoint and credentials.
    bucket = stack.enter_context(s3_bucket("gigacanvas-multinode"))
    # A dead node is noticed within ~3 s (Ray: 15 s), so the scenario after a removal starts sooner.
    health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": health})
    nodes = [cluster.add_node(num_cpus=4) for _ in range(2)]
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    cluster.wait_for_nodes()
    results: dict[str, dict] = {}
    seen_nodes: list[str] = []
    start_workers = placement.start_workers

    def recording_start_workers(*args, **kwargs):
        workers, caps = start_workers(*args, **kwargs)
        seen_nodes[:] = _worker_nodes(workers)
        return workers, caps

    placement.start_workers = recording_start_workers
    predicted = steploop._Wavefront._predicted
    fault = {"at": None, "do": None}

    def predicted_then_fault(self, key):
        predicted(self, key)
        fault["count"] = fault.get("count", 0) + 1
        if fault["at"] is not None and fault["count"] == fault["at"]:
            fault["do"]()

    steploop._Wavefront._predicted = predicted_then_fault

    def run(name: str, spec: RenderSpec, at: int | None = None, do=None, on_note=None) -> None:
        fault.update(at=at, do=do, count=0)
        notes: list[str] = []
        entry: dict = {"out": spec.out, "store": spec.store_url}
        started = time.perf_counter()

        def note(line: str) -> None:
            notes.append(line)
            if on_note is not None:
                on_note(line)

        try:
            result = render(spec, progress=False, notify=note)
            entry["steps_run"] = result.steps_run
        except GigacanvasError as exc:
            entry["error"] = str(exc)
        entry["seconds"] = round(time.perf_counter() - started, 1)
        entry["notes"] = notes
        entry["nodes"] = len(set(seen_nodes))
        results[name] = entry

    def spec(name: str, base: dict, store: str | None = None, **changes) -> RenderSpec:
        fields = {**base, **changes}
        return RenderSpec(out=str(out / f"{name}.png"), store=store or str(out / f"{name}.zarr"), **fields)

    try:
        # One actor on one node is the single-node render test_multinode.py makes itself.
        for actors in (3, 8):
            run(f"tiny-{actors}", spec(f"tiny-{actors}", TINY, model=tiny_model, actors=actors))

        def kill_a_busy_worker():
            busy = _processes("ray::Worker.predict_bands")
            assert busy, "no worker was inside a tile call"
            busy[0].send_signal(signal.SIGKILL)

        run("sim-worker-killed", spec("sim-worker-killed", FAULTS), at=5, do=kill_a_busy_worker)

        def kill_a_reducer():
            reducers = _processes("ray::Reducer")
            assert reducers, "no reducer process"
            reducers[0].send_signal(signal.SIGKILL)
            time.sleep(0.5)  # let the death reach the driver while the step is still running

        # On object storage: reducers on any node, and the killed render resumes from S3.
        killed = spec("sim-reducer-killed", FAULTS, store=f"{bucket}/sim-reducer-killed.zarr")
        run("sim-reducer-killed", killed, at=23, do=kill_a_reducer)
        run("sim-reducer-resumed", killed)

        # Last: a removed node stays in the cluster's view for a while, where new actors could be placed.
        def remove_a_worker_node():
            victim = next(n for n in nodes if n.node_id in seen_nodes)
            cluster.remove_node(victim, allow_graceful=False)
            nodes.remove(victim)
            results["removed-node-had-workers"] = {"count": seen_nodes.count(victim.node_id)}

        run("sim-node-removed", spec("sim-node-removed", FAULTS), at=20, do=remove_a_worker_node)

        # An autoscaler (a stand-in reporting as Ray's v2 does) adds the node that a 6-actor render
        # lacks (the cluster holds 5 CPUs now) once the render says it waits for one. Undisturbed
        # otherwise, this render is the one the fault scenarios are compared with (pixels do not
        # depend on the actor count: tiny-3 and tiny-8 show it with the real model).
        def add_a_node(line: str) -> None:
            if "waiting up to" in line:
                nodes.append(cluster.add_node(num_cpus=4))

        deadline = time.monotonic() + 60  # first the removed node must leave the cluster's view
        while len([n for n in ray.nodes() if n["Alive"]]) > 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        with fake_autoscaler():
            run("sim-autoscaled", spec("sim-autoscaled", FAULTS, actors=6), on_note=add_a_node)
    finally:
        (out / "results.json").write_text(json.dumps(results, indent=1))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("GIGACANVAS_ACTOR_START_TIMEOUT", "120")
    main(Path(sys.argv[1]), sys.argv[2])
