"""Three simulated nodes: pixels do not depend on nodes or actors, and renders survive dead actors.

The renders run once, in a process of their own (tests/cluster/multinode.py); each test checks
one fact of what came out. Fault scenarios are compared with an undisturbed render of the same
spec on the same cluster (the one that waited for an autoscaler's node).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gigacanvas import RenderSpec, render
from tests.cluster.multinode import TINY

ROOT = Path(__file__).resolve().parents[2]


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def scenarios(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("multinode")
    argv = [sys.executable, "-m", "tests.cluster.multinode", str(out), tiny_model]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the cluster's raylets are in its session
        log, _ = proc.communicate()
    assert proc.returncode == 0, log[-4000:]
    return json.loads((out / "results.json").read_text())


def test_pixels_are_identical_on_one_node_and_on_three_for_1_3_or_8_actors(scenarios, tiny_model, ray_cluster, tmp_path):
    one_node = render(RenderSpec(model=tiny_model, actors=1, out=str(tmp_path / "one.png"), **TINY), progress=False)
    expected = _pixels(one_node.out)
    assert expected.std() > 5  # a real picture
    for actors in (3, 8):  # and 1 actor: `one_node`
        run = scenarios[f"tiny-{actors}"]
        assert "error" not in run, run
        np.testing.assert_array_equal(_pixels(run["out"]), expected, err_msg=f"{actors} actors")
    assert scenarios["tiny-8"]["nodes"] >= 2  # 8 one-CPU actors cannot fit one 4-CPU node


def _undisturbed(scenarios) -> np.ndarray:
    """The reference: the autoscaled render, which no fault touched (one render fewer in CI)."""
    run = scenarios["sim-autoscaled"]
    assert "error" not in run, run
    return _pixels(run["out"])


def _died_notices(run) -> list[str]:
    return [n for n in run["notes"] if "worker actor died" in n]


def test_a_worker_killed_while_it_holds_tiles_costs_nothing_but_time(scenarios):
    run = scenarios["sim-worker-killed"]
    assert "error" not in run and run["steps_run"] == 3
    assert len(_died_notices(run)) == 1  # said once, though it held two jobs
    assert "run again on the other 2" in _died_notices(run)[0]
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))


def test_a_node_removed_mid_step_costs_nothing_but_time(scenarios):
    run = scenarios["sim-node-removed"]
    assert "error" not in run and run["steps_run"] == 3
    assert len(_died_notices(run)) == scenarios["removed-node-had-workers"]["count"] >= 1
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))


def test_a_killed_reducer_ends_the_render_and_its_s3_store_resumes_to_the_same_pixels(scenarios):
    killed, resumed = scenarios["sim-reducer-killed"], scenarios["sim-reducer-resumed"]
    assert killed["store"].startswith("s3://")
    assert "band reducer died" in killed["error"] and "last committed step" in killed["error"]
    assert "error" not in resumed and 0 < resumed["steps_run"] < 3  # it kept committed steps
    assert any("resuming" in n for n in resumed["notes"])
    np.testing.assert_array_equal(_pixels(resumed["out"]), _undisturbed(scenarios))


def test_a_render_waits_for_the_node_an_autoscaler_adds_and_renders_the_same_pixels(scenarios):
    run = scenarios["sim-autoscaled"]
    assert "error" not in run and run["steps_run"] == 3, run
    assert any("holds 5 of 6 actor(s) of 1 CPU now; waiting up to" in n for n in run["notes"]), run["notes"]
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))
