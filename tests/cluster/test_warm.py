"""Loaded workers kept between the renders of one process (cluster/warm.py; conftest keeps them on).

The bits must not see it: a kept worker's picture is a fresh worker's. What must not be kept: a
failed render's workers, and workers of another model or actor shape once another render starts.
"""

import time

import numpy as np
import pytest
import ray
from PIL import Image

from gigacanvas import RenderSpec, keep_workers, release_workers, render
from gigacanvas.cluster import warm
from gigacanvas.errors import RenderError
from tests.helpers import MULTI_TILE, fail_after_step


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _parked(kind: str = "worker") -> list:
    return [actor for key, _, actor in warm._parked if key[0] == kind]


def _ids(actors) -> set:
    return {actor._actor_id for actor in actors}


def _answers(actor) -> bool:
    """Whether `actor` answers a call (a worker's or a reducer's)."""
    call = actor.peak_rss_mib if hasattr(actor, "peak_rss_mib") else actor.capabilities
    try:
        ray.get(call.remote(), timeout=60)
    except ray.exceptions.RayActorError:
        return False
    return True


def _dead(actor, within: float = 60) -> bool:
    """Whether `actor` stops answering within `within` s: `ray.kill` is asynchronous, so a call made
    just after it may still be answered (CI saw that once)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _answers(actor):
            return True
        time.sleep(0.2)
    return False


def _spec(tiny_model, tmp_path, name: str, **changes) -> RenderSpec:
    """MULTI_TILE on two actors; a memory:// store (its one reducer in this process) unless `store`."""
    store = f"memory://gc-warm/{tmp_path.name}/{name}.zarr"
    return RenderSpec(model=tiny_model, out=str(tmp_path / f"{name}.png"), **{**MULTI_TILE, "actors": 2, "store": store, **changes})


def test_the_next_render_takes_the_kept_workers_and_reducers_and_its_pixels_are_a_fresh_ones(
    ray_cluster, tiny_model, tmp_path, one_actor_render, monkeypatch
):
    from gigacanvas.cluster import steploop

    _, fresh = one_actor_render  # one fresh actor, its band reduced in process
    monkeypatch.setattr(steploop, "BAND_BYTES", 1)  # a band per actor: two reducer actors
    release_workers()
    first = render(_spec(tiny_model, tmp_path, "first", store=str(tmp_path / "first.zarr")), progress=False)
    workers, reducers = _parked(), _parked("reducer")
    assert len(workers) == 2 and len(reducers) == 2 and all(_answers(a) for a in workers + reducers)
    second = render(_spec(tiny_model, tmp_path, "second", store=str(tmp_path / "second.zarr")), progress=False)
    assert _ids(_parked()) == _ids(workers) and _ids(_parked("reducer")) == _ids(reducers)  # started once
    np.testing.assert_array_equal(_pixels(first.out), fresh)
    np.testing.assert_array_equal(_pixels(second.out), fresh)


def test_another_precision_reloads_the_kept_workers_to_a_fresh_workers_bits(ray_cluster, tiny_model, tmp_path):
    render(_spec(tiny_model, tmp_path, "fp32"), progress=False)
    kept = _parked()
    bf16 = render(_spec(tiny_model, tmp_path, "bf16", precision="bf16"), progress=False)
    assert _ids(_parked()) == _ids(kept) and bf16.precision == "bf16"
    release_workers()
    assert all(_dead(a) for a in kept)
    again = render(_spec(tiny_model, tmp_path, "bf16-fresh", precision="bf16", actors=1), progress=False)
    np.testing.assert_array_equal(_pixels(bf16.out), _pixels(again.out))


def test_a_failed_render_keeps_nothing_and_another_shape_ends_the_kept(ray_cluster, tiny_model, tmp_path, monkeypatch):
    render(_spec(tiny_model, tmp_path, "two", store=str(tmp_path / "two.zarr")), progress=False)
    kept = _parked() + _parked("reducer")
    assert kept
    fail_after_step(monkeypatch, 1, "simulated node loss")
    with pytest.raises(RenderError, match="simulated"):
        render(_spec(tiny_model, tmp_path, "failed", store=str(tmp_path / "failed.zarr")), progress=False)
    monkeypatch.undo()
    assert warm._parked == [] and all(_dead(a) for a in kept)  # taken by the failed render, then stopped

    render(_spec(tiny_model, tmp_path, "one", actors=1), progress=False)
    kept = _parked()
    wide = render(_spec(tiny_model, tmp_path, "wide", actors=1, cpus_per_actor=1.0), progress=False)
    assert all(_dead(a) for a in kept)  # another shape: freed before its actor started
    assert len(_parked()) == 1 and wide.actors == 1


def test_a_kept_worker_that_died_is_started_again(ray_cluster, tiny_model, tmp_path, one_actor_render):
    _, fresh = one_actor_render
    render(_spec(tiny_model, tmp_path, "first"), progress=False)
    gone, alive = _parked()
    ray.kill(gone, no_restart=True)
    assert _dead(gone)  # dead before the render takes it (a kill is asynchronous)
    notes: list[str] = []
    result = render(_spec(tiny_model, tmp_path, "after"), progress=False, notify=notes.append)
    now = _parked()
    assert len(now) == 2 and alive._actor_id in _ids(now) and gone._actor_id not in _ids(now)
    assert any("died before they started" in n for n in notes)
    np.testing.assert_array_equal(_pixels(result.out), fresh)


def test_not_keeping_stops_the_kept_and_each_render_ends_its_own(ray_cluster, tiny_model, tmp_path):
    render(_spec(tiny_model, tmp_path, "kept", actors=1), progress=False)
    kept = _parked()
    assert kept
    try:
        keep_workers(False)
        assert warm._parked == [] and all(_dead(a) for a in kept)
        render(_spec(tiny_model, tmp_path, "not-kept", actors=1), progress=False)
        assert warm._parked == []
    finally:
        keep_workers(True)


def test_workers_kept_on_a_cluster_since_shut_down_are_forgotten_not_taken(ray_cluster, monkeypatch):
    """A new local cluster numbers its first job as the old one did: what was kept on the old one
    (its handles now name no actor: submitting to one raises) must never be taken."""
    context = ray.get_runtime_context

    class OldCluster:  # the same job id, another driver node: the cluster before a shutdown
        def get_job_id(self):
            return context().get_job_id()

        def get_node_id(self):
            return "f" * 56

    class Gone:
        _actor_id = "an actor of a cluster since shut down"

    key = ("worker", "model", "shape")
    monkeypatch.setattr(ray, "get_runtime_context", OldCluster)
    assert warm.park(key, [Gone()])
    monkeypatch.undo()
    assert warm.take(key, 2) == [] and warm._parked == []
    monkeypatch.setattr(ray, "get_runtime_context", OldCluster)
    warm.park(key, [Gone()])
    monkeypatch.undo()
    assert release_workers() == 0 and warm._parked == []
