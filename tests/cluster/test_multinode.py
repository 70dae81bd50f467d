"""Three simulated nodes: pixels do not depend on nodes or actors, and renders survive dead actors.

The renders run once, in a process of their own (tests/cluster/multinode.py); each test checks
one fact of what came out. Fault scenarios are compared with an undisturbed render of the same
spec on the same cluster (the one that waited for an autoscaler's node).
"""

import numpy as np
import pytest
from PIL import Image

from gigacanvas.storage import LatentStore
from tests.cluster.multinode import TINY_ACTORS, Renders


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def renders(tiny_model, tmp_path_factory):
    renders = Renders(tmp_path_factory.mktemp("multinode"), tiny_model)
    yield renders
    renders.stop()  # only if a failure left it running


@pytest.fixture(scope="module")
def scenarios(renders, one_actor_render):
    """The renders' results; the one-node render they are compared with is made while they run."""
    return renders.results()


def test_pixels_and_latent_are_identical_for_1_actor_on_one_node_and_3_over_the_nodes(scenarios, one_actor_render):
    """Also the single-node tests' other actor count: each of the 3 bands in a reducer of its own."""
    one, expected = one_actor_render  # one actor, one band, on the session's one-node cluster
    assert one.tiles_per_step == 7 and expected.shape == (320, 512, 3)  # 6 tiles, then 8: the windows shift
    assert expected.std() > 5  # a real picture, not a constant
    run = scenarios["tiny"]
    assert "error" not in run, run
    assert run["actors"] == TINY_ACTORS and len(LatentStore(run["store"]).bands) == TINY_ACTORS
    assert run["nodes"] >= 2  # 3 one-CPU actors cannot fit one 2-CPU node
    np.testing.assert_array_equal(_pixels(run["out"]), expected)
    np.testing.assert_array_equal(LatentStore(run["store"]).read_latent()[0], LatentStore(one.store).read_latent()[0])


def _undisturbed(scenarios) -> np.ndarray:
    """The reference: the autoscaled render, which no fault touched (one render fewer in CI)."""
    run = scenarios["sim-autoscaled"]
    assert "error" not in run, run
    return _pixels(run["out"])


def _died_notices(run) -> list[str]:
    return [n for n in run["notes"] if "worker actor died" in n]


def _fault_hit_mid_render(run, committed: int = 1) -> None:
    """The fault was injected, with the store at `committed` and steps still to run: so the
    scenario tested what it names, and could not have finished before the fault."""
    hit = run["fault"]
    assert hit is not None, f"the fault never hit: {run}"
    assert hit["committed"] == committed < hit["steps"], hit


def test_a_worker_killed_while_it_holds_tiles_costs_nothing_but_time(scenarios):
    run = scenarios["sim-resumed-worker-killed"]  # the resume of the reducer-killed render below
    assert "error" not in run and run["steps_run"] == 2, run
    _fault_hit_mid_render(run)
    assert len(_died_notices(run)) == 1  # said once, though it held two jobs
    assert "run again on the other 2" in _died_notices(run)[0]
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))


def test_a_node_removed_mid_step_costs_nothing_but_time(scenarios):
    run = scenarios["sim-node-removed"]
    assert "error" not in run and run["steps_run"] == 3, run
    _fault_hit_mid_render(run)
    assert len(_died_notices(run)) == scenarios["removed-node-had-workers"]["count"] >= 1
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))


def test_a_killed_reducer_ends_the_render_and_its_s3_store_resumes_to_the_same_pixels(scenarios):
    killed, resumed = scenarios["sim-reducer-killed"], scenarios["sim-resumed-worker-killed"]
    assert killed["store"].startswith("s3://")
    _fault_hit_mid_render(killed)  # killed at the first prediction of step 2
    assert "band reducer died" in killed.get("error", ""), killed
    assert "last committed step" in killed["error"]
    assert "error" not in resumed and resumed["steps_run"] == 2, resumed  # it kept the committed step 1
    assert any("resuming" in n for n in resumed["notes"])
    np.testing.assert_array_equal(_pixels(resumed["out"]), _undisturbed(scenarios))


def test_a_render_waits_for_the_node_an_autoscaler_adds_and_renders_the_same_pixels(scenarios):
    run = scenarios["sim-autoscaled"]
    assert "error" not in run and run["steps_run"] == 3, run
    assert any("holds 3 of 4 actor(s) of 1 CPU now; waiting up to" in n for n in run["notes"]), run["notes"]
    np.testing.assert_array_equal(_pixels(run["out"]), _undisturbed(scenarios))
