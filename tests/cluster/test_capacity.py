"""Actors beyond the alive nodes on an autoscaled cluster: wait with progress, refuse what can never fit.

The autoscaler is a stand-in (tests/cluster/fake_autoscaler.py) reporting to the shared
single-node cluster's GCS what Ray's autoscaler v2 reports; nodes that arrive meanwhile are the
multinode test's `sim-autoscaled` scenario.
"""

import re
import time

import pytest

from gigacanvas.cluster import capacity, placement
from tests.cluster.fake_autoscaler import fake_autoscaler
from tests.helpers import run_cli

FLAGS = ["--prompt", "x", "--width", "256", "--height", "256", "--steps", "1", "--no-progress",
         "--actors", "3", "--cpus-per-actor", "1"]  # the shared cluster has 2 CPUs


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(placement, "START_TIMEOUT_S", 3.0)
    monkeypatch.setattr(capacity, "POLL_S", 0.2)
    monkeypatch.setattr(capacity, "PROGRESS_S", 1.0)


def test_without_an_autoscaler_too_many_actors_are_refused_at_once(ray_cluster, tiny_model, tmp_path, capsys):
    assert not capacity.autoscaling()  # a local cluster's v1 monitor runs, but adds no node
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", str(tmp_path / "p.png"))
    assert code == 2 and "can hold at most 2" in err and "autoscaler v2" in err, err
    assert not (tmp_path / "p.zarr").exists()


def test_with_an_autoscaler_the_render_waits_for_nodes_says_so_and_ends_at_its_timeout(ray_cluster, tiny_model, tmp_path, capsys, quick):
    with fake_autoscaler():
        assert capacity.autoscaling()
        code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", str(tmp_path / "p.png"))
    lines = err.strip().splitlines()
    assert code == 1, err
    assert any("holds 2 of 3 actor(s) of 1 CPU now; waiting up to 3 s for the autoscaler" in line for line in lines)
    assert any(re.match(r"gigacanvas: waiting for nodes: [0-2] of 3 actor\(s\) started, \d s of up to 3 s", line) for line in lines), err
    assert re.match(r"gigacanvas: error: only [0-2] of 3 actor\(s\) of 1 CPU started within 3 s", lines[-1]), err
    assert "Traceback" not in err
    assert not (tmp_path / "p.zarr").exists()  # refused before anything was written
    deadline = time.monotonic() + 20  # and nothing left holding the cluster
    while ray_cluster.available_resources().get("CPU") != 2:
        assert time.monotonic() < deadline, ray_cluster.available_resources()
        time.sleep(0.2)


def test_what_no_worker_type_can_hold_is_refused_as_soon_as_the_autoscaler_says_so(ray_cluster, tiny_model, tmp_path, capsys, quick):
    with fake_autoscaler(infeasible=[{"CPU": 1.0}]):
        code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", str(tmp_path / "p.png"))
    assert code == 2 and "3 actor(s) of 1 CPU cannot be placed: the autoscaler reports" in err, err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
