"""Renders on a simulated three-node Ray cluster, with faults injected mid-step; checked by test_multinode.py.

`python -m tests.cluster.multinode OUT_DIR TINY_MODEL` starts a `ray.cluster_utils.Cluster` (a
head of one CPU and two worker nodes of two, in processes of this machine: nodes as small as the
scenarios allow, as every actor placed costs seconds of imports), renders the scenarios below into
OUT_DIR (the reducer-killed render's store on a loopback S3 server, moto, started first so that
every node sees it) and writes OUT_DIR/results.json: per scenario the PNG, the notices the render printed,
the error it ended with (if any) and the nodes its workers ran on. Its own process, because a
process joins one Ray cluster and the other tests share a single-node one. `Renders` starts it
and waits for it, so that the caller can do other work meanwhile.

Faults are injected from inside the step loop upon an event, never after a delay: at the Nth
prediction to arrive once every band has committed a given step, so they hit while workers hold
tiles and while the render still has whole steps to run (it cannot finish first), and each kills
a process of this render's own, found by the PID its actor reports (another test run on the
machine has processes of the same names). The results record where each fault hit. Each render costs a cluster's worth of actor
start-ups, so one render carries two checks where neither hides the other: the resume of the
reducer-killed store also loses a worker, and the tiny model's render over the nodes keeps each
band in a reducer of its own (test_render.py's other actor counts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster.fake_autoscaler import fake_autoscaler
from tests.helpers import MULTI_TILE, s3_bucket

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900  # from the start, for all the renders together
NODE_CPUS = 2  # each worker node's; the head has 1
# The session's one-actor render's spec (conftest's `one_actor_render`), in one-CPU actors:
# 3 of them cannot fit one node, so they span two nodes or three.
TINY = {**MULTI_TILE, "cpus_per_actor": 1.0}
TINY_ACTORS = 3
# The simulated model sleeps per tile, so workers are surely inside a tile call when a fault hits.
FAULTS = {"prompt": "faults", "width": 768, "height": 768, "steps": 3, "seed": 9, "tile_size": 256,
          "tile_overlap": 64, "tile_batch": 1, "vae_tile_size": 256, "cpus_per_actor": 1.0, "actors": 3,
          "model": "simulated:0.15"}


class Renders:
    """This module's renders in a process of their own, started now; `results()` waits for them.

    Its output goes to a file (a pipe nobody reads for minutes would fill and stall it), and it
    runs in a session of its own: its cluster's raylets and workers end with it at `stop()`.
    """

    def __init__(self, out: Path, tiny_model: str):
        self.out = out
        self.log = out / "multinode.log"
        self.deadline = time.monotonic() + TIMEOUT_S
        argv = [sys.executable, "-m", "tests.cluster.multinode", str(out), tiny_model]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def results(self) -> dict:
        """results.json once the process has ended; fails with its log's tail if it did not end well."""
        try:
            self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stop()
        code = self.proc.returncode
        ended = f"killed after {TIMEOUT_S} s" if code == -signal.SIGKILL else f"exit code {code}"
        assert code == 0, f"{ended}: {self.log.read_text()[-4000:]}"
        return json.loads((self.out / "results.json").read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the cluster's raylets are in its session
            self.proc.wait()


def _pids(actors) -> list[int]:
    """The processes of `actors`: what a fault kills (SIGKILL, as a crash or the OOM killer would).

    Asked when the fault hits, so only of actors that run no long calls (reducers); a worker is
    asked once at its start (`recording_start_workers`), as its queue holds tile calls.
    """
    import ray

    return ray.get([a.__ray_call__.remote(lambda self: os.getpid()) for a in actors])


def _worker_places(workers) -> list[tuple[str, int]]:
    """(node id, PID) of each worker."""
    import ray

    def place(self):
        return ray.get_runtime_context().get_node_id(), os.getpid()

    return [tuple(p) for p in ray.get([w.__ray_call__.remote(place) for w in workers])]


# cluster_utils waits 30 s for a node to register; on a loaded 2-core CI machine a node's start-up
# has taken longer, failing every test of the file, so each node gets this long.
NODE_START_S = 180


def _wait(cluster, node):
    cluster._wait_for_node(node, timeout=NODE_START_S)  # what add_node(wait=True) does, with 30 s
    return node


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
    cluster = Cluster()
    _wait(cluster, cluster.add_node(wait=False, num_cpus=1, include_dashboard=False, _system_config=health))  # the head
    nodes = [_wait(cluster, cluster.add_node(wait=False, num_cpus=NODE_CPUS)) for _ in range(2)]
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    cluster.wait_for_nodes(timeout=NODE_START_S)
    results: dict[str, dict] = {}
    places: dict[str, tuple[str, int]] = {}  # worker actor id -> (node id, PID), of the latest render
    start_workers = placement.start_workers

    def recording_start_workers(*args, **kwargs):
        workers, caps = start_workers(*args, **kwargs)
        places.clear()
        places.update(zip((w._actor_id.hex() for w in workers), _worker_places(workers)))
        return workers, caps

    placement.start_workers = recording_start_workers
    predicted = steploop._Wavefront._predicted
    fault: dict = {"do": None}

    def predicted_then_fault(self, key):
        """After `self` handled a prediction: the fault, at the `at`-th arrival since every band
        committed step `after` (so the store holds that step and the render has steps to run)."""
        predicted(self, key)
        if fault["do"] is None or self.done_step < fault["after"]:
            return
        fault["count"] += 1
        if fault["count"] == fault["at"]:
            fault["hit"] = {"committed": self.done_step, "steps": self.steps, "prediction": list(key)}
            fault["do"](self)

    steploop._Wavefront._predicted = predicted_then_fault

    def run(name: str, spec: RenderSpec, after: int = 1, at: int = 0, do=None, on_note=None) -> None:
        """Render `spec`; with `do`, call `do(wavefront)` at the `at`-th prediction to arrive once
        step `after` is committed (the entry's "fault" says where it hit; none: it never did)."""
        fault.update(after=after, at=at, do=do, count=0, hit=None)
        notes: list[str] = []
        entry: dict = {"out": spec.out, "store": spec.store_url}
        started = time.perf_counter()

        def note(line: str) -> None:
            notes.append(line)
            if on_note is not None:
                on_note(line)

        try:
            result = render(spec, progress=False, notify=note)
            entry.update(steps_run=result.steps_run, actors=result.actors)
        except GigacanvasError as exc:
            entry["error"] = str(exc)
        entry["seconds"] = round(time.perf_counter() - started, 1)
        entry["notes"] = notes
        entry["nodes"] = len({node for node, _ in places.values()})
        entry["fault"] = fault["hit"]
        results[name] = entry

    def spec(name: str, base: dict, store: str | None = None, **changes) -> RenderSpec:
        fields = {**base, **changes}
        return RenderSpec(out=str(out / f"{name}.png"), store=store or str(out / f"{name}.zarr"), **fields)

    try:
        # One actor on one node is the session's render (conftest's `one_actor_render`). Here a
        # band per actor, each its own reducer: a small canvas gets one band unless bands are tiny.
        steploop.BAND_BYTES, band_bytes = 1, steploop.BAND_BYTES
        run("tiny", spec("tiny", TINY, model=tiny_model, actors=TINY_ACTORS))
        steploop.BAND_BYTES = band_bytes

        def kill_a_busy_worker(wavefront):
            pool = wavefront.pool
            holding = [w for w, _ in pool._running.values() if w in pool.alive]
            assert holding, "no worker held a job"  # never: the step has jobs left and room for them
            os.kill(places[holding[0]._actor_id.hex()][1], signal.SIGKILL)

        def kill_a_reducer(wavefront):
            os.kill(_pids(wavefront.reducers[:1])[0], signal.SIGKILL)

        # On object storage: reducers on any node, and the killed render resumes from S3 (at step
        # 1: killed at the first prediction of step 2); the resume loses a worker that holds tiles
        # (its steps are the resume's, its pixels the same).
        killed = spec("sim-reducer-killed", FAULTS, store=f"{bucket}/sim-reducer-killed.zarr")
        run("sim-reducer-killed", killed, after=1, at=1, do=kill_a_reducer)
        run("sim-resumed-worker-killed", killed, after=1, at=5, do=kill_a_busy_worker)

        # Last: a removed node stays in the cluster's view for a while, where new actors could be placed.
        def remove_a_worker_node(wavefront):
            pool = wavefront.pool
            hosts = [places[w._actor_id.hex()][0] for w, _ in pool._running.values()]  # holding jobs first
            hosts += [places[w._actor_id.hex()][0] for w in pool.alive]
            victim = next(n for host in hosts for n in nodes if n.node_id == host)  # never the head
            cluster.remove_node(victim, allow_graceful=False)
            nodes.remove(victim)
            on_victim = [w for w in pool.alive if places[w._actor_id.hex()][0] == victim.node_id]
            results["removed-node-had-workers"] = {"count": len(on_victim)}

        run("sim-node-removed", spec("sim-node-removed", FAULTS), after=1, at=4, do=remove_a_worker_node)

        # An autoscaler (a stand-in reporting as Ray's v2 does) adds the node that a 4-actor render
        # lacks (the cluster holds 3 CPUs now) once the render says it waits for one. Undisturbed
        # otherwise, this render is the one the fault scenarios are compared with (pixels do not
        # depend on the actor count: the tiny render shows it with the real model).
        def add_a_node(line: str) -> None:
            if "waiting up to" in line:
                nodes.append(_wait(cluster, cluster.add_node(wait=False, num_cpus=NODE_CPUS)))

        deadline = time.monotonic() + 60  # first the removed node must leave the cluster's view
        while len([n for n in ray.nodes() if n["Alive"]]) > 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        with fake_autoscaler():
            run("sim-autoscaled", spec("sim-autoscaled", FAULTS, actors=4), on_note=add_a_node)
    finally:
        (out / "results.json").write_text(json.dumps(results, indent=1))
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
