import pytest

from gigacanvas.cluster.placement import ActorShape, check_capacity, plan_shape
from gigacanvas.errors import RenderError, UsageError

CPU_NODE = {"CPU": 2.0}
GPU_NODES = [{"CPU": 16.0, "GPU": 2.0}, {"CPU": 16.0, "GPU": 1.0}]


def test_cpu_slices_fit_by_node():
    check_capacity(4, ActorShape(0.5, 0, 1), [CPU_NODE])
    with pytest.raises(UsageError, match="can hold at most 4; lower --actors or --cpus-per-actor"):
        check_capacity(5, ActorShape(0.5, 0, 1), [CPU_NODE])


def test_gpus_are_counted_per_node_not_summed():
    check_capacity(3, ActorShape(1, 1, 1), GPU_NODES)
    with pytest.raises(UsageError, match=r"needs 1 GPU each .*2 node\(s\), 32 CPU, 3 GPU\) can hold at most 3"):
        check_capacity(4, ActorShape(1, 1, 1), GPU_NODES)
    # half-GPUs that would sum to enough still cannot be split across nodes
    with pytest.raises(UsageError):
        check_capacity(2, ActorShape(1, 1, 1), [{"CPU": 4, "GPU": 0.5}] * 4)


def test_plan_shape_on_a_live_cpu_cluster(ray_cluster):
    count, shape = plan_shape(None, 0.5)
    assert count == 2 and shape.num_gpus == 0 and shape.num_cpus == 0.5
    with pytest.raises(UsageError, match="--actors 100 needs 0.5 CPU each"):
        plan_shape(100, 0.5)


FAKE_GPU_SCRIPT = """
import ray
from ray.cluster_utils import Cluster
from gigacanvas.cluster.placement import plan_shape
from gigacanvas.errors import UsageError

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 2})
cluster.add_node(num_cpus=2, num_gpus=1)
ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
cluster.wait_for_nodes()
count, shape = plan_shape(None, 0.5)
print("default", count, shape.num_gpus)
try:
    plan_shape(4, 0.5)
except UsageError as exc:
    print("refused", exc)
ray.shutdown()
cluster.shutdown()
"""


def test_fake_gpu_nodes_get_one_gpu_per_actor(tmp_path):
    """Two nodes with fake GPUs (2 + 1): one actor per GPU by default, a fourth fails fast."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", FAKE_GPU_SCRIPT], capture_output=True, text=True, timeout=240)
    assert "default 3 1" in run.stdout, run.stderr[-2000:]
    assert "refused --actors 4 needs 1 GPU each" in run.stdout


def test_an_address_nobody_answers_fails_at_once():
    from gigacanvas.cluster.placement import _check_reachable

    with pytest.raises(UsageError, match="no Ray cluster answers at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(UsageError, match="no Ray cluster answers at ray://127.0.0.1:1"):
        _check_reachable("ray://127.0.0.1:1")
    with pytest.raises(UsageError, match="is not host:port"):
        _check_reachable("headnode")
    _check_reachable("auto")  # Ray's own discovery: nothing to probe


def test_unreachable_address_through_the_console(tiny_model, tmp_path):
    import subprocess
    import sys

    argv = ["render", "--prompt", "x", "--width", "256", "--height", "256", "--model", tiny_model,
            "--address", "127.0.0.1:1", "--out", str(tmp_path / "a.png")]
    run = subprocess.run([sys.executable, "-m", "gigacanvas", *argv], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == "gigacanvas: error: no Ray cluster answers at 127.0.0.1:1 (Connection refused); check --address or RAY_ADDRESS"
    assert list(tmp_path.iterdir()) == []


def test_a_worker_that_dies_before_its_first_answer_is_started_again(ray_cluster, tmp_path):
    """As on a node Ray still lists for seconds after it died: the first actor dies, its successor answers."""
    import os

    from gigacanvas.cluster.placement import START_TRIES, _first_answers

    @ray_cluster.remote(num_cpus=0)
    class Flaky:
        def __init__(self, marker: str, die: bool):
            if die and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # gone before its first answer

        def capabilities(self):
            return "ok"

    notes: list[str] = []
    marker = str(tmp_path / "died-once")

    def start(die=True):
        return Flaky.remote(marker, die)

    workers = [start(), start(die=False)]
    refs = [w.capabilities.remote() for w in workers]
    assert _first_answers(start, workers, refs, "starting 2 actor(s)", notes.append) == ["ok", "ok"]
    assert notes == ["gigacanvas: 1 actor(s) died before they started (a node going away?); starting them again"]

    fresh = iter(range(100))

    def dying():  # each with a marker of its own: every start dies
        return Flaky.remote(str(tmp_path / f"m{next(fresh)}"), True)

    first = dying()
    with pytest.raises(RenderError, match=f"actors died before they started, {START_TRIES} times"):
        _first_answers(dying, [first], [first.capabilities.remote()], "starting 1 actor(s)", notes.append)
