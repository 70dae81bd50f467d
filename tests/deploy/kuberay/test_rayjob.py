"""deploy/kuberay/rayjob.yaml: one render on a cluster of its own, with paths that mean the same on
every node, on the cluster raycluster.yaml describes. (The cluster's own facts: test_raycluster.py.)"""

import copy
import re
import shlex

import pytest

from gigacanvas.cluster.cli import RENDER_FLAGS, build_parser
from gigacanvas.cluster.spec import build_spec
from tests.deploy.kuberay.crd import manifest

# Flags that name files or stores: in a job a relative one resolves in a folder of Ray's.
PATH_FLAGS = ("--model", "--base-model", "--store", "--out", "--spec")
URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


def flag_values(argv: list[str]) -> dict[str, str]:
    """`--flag value` and `--flag=value` pairs of a command line (boolean flags map to '')."""
    values, i = {}, 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("--") and "=" in word:
            flag, value = word.split("=", 1)
            values[flag] = value
        elif word.startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            values[word] = argv[i + 1] if has_value else ""
            i += has_value
        i += 1
    return values


def relative_paths(argv: list[str]) -> list[str]:
    """The path flags whose value is neither an absolute path nor a URL (file:// must be absolute)."""
    found = []
    for flag, value in flag_values(argv).items():
        if flag not in PATH_FLAGS:
            continue
        path = value.removeprefix("file://")
        if path == value and URL.match(value):
            continue
        if not path.startswith("/"):
            found.append(f"{flag} {path}")
    return found


@pytest.fixture(scope="module")
def job() -> dict:
    return manifest("rayjob.yaml")


@pytest.fixture(scope="module")
def argv(job) -> list[str]:
    return shlex.split(job["spec"]["entrypoint"])


def test_the_entrypoint_is_a_render_gigacanvas_accepts(argv):
    assert argv[:2] == ["gigacanvas", "render"]
    args = build_parser().parse_args(argv[1:])
    flags = {name: getattr(args, name) for name in (f.lstrip("-").replace("-", "_") for f, _, _ in RENDER_FLAGS)}
    spec = build_spec(args.spec, overwrite=args.overwrite, strict_precision=args.strict_precision, **flags)
    assert (spec.width, spec.height, spec.steps) == (8192, 8192, 28)


def test_the_entrypoint_names_absolute_paths_and_urls_only(argv):
    assert relative_paths(argv) == []
    values = flag_values(argv)
    assert values["--store"].startswith("s3://")
    # the picture goes to the bucket, which outlives the cluster, not to a pod's disk
    assert values["--out"].startswith("s3://") and values["--out"].endswith(".png")


@pytest.mark.parametrize(
    "line, found",
    [
        ("gigacanvas render --out poster.png", ["--out poster.png"]),
        ("gigacanvas render --store=out.zarr --no-progress", ["--store out.zarr"]),
        ("gigacanvas render --model models/sd35 --store file://rel.zarr", ["--model models/sd35", "--store rel.zarr"]),
        ("gigacanvas render --model /m --store s3://b/p.zarr --out file:///data/p.png", []),
    ],
)
def test_a_relative_path_is_caught(line, found):
    assert relative_paths(shlex.split(line)) == found


def test_the_gpus_the_render_asks_for_are_up_when_it_starts(job, argv):
    """The job's cluster starts with a GPU per actor: the render would wait for the autoscaler's
    nodes, but KubeRay submits once the pods are up, so no scale-up round is spent."""
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    starting = sum(
        group.get("replicas", 0) * int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        for group in groups
    )
    assert starting >= int(flag_values(argv)["--actors"])


def test_the_cluster_is_its_own_and_goes_when_the_render_ends(job):
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert "clusterSelector" not in spec and spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["activeDeadlineSeconds"] > 0


def test_the_cluster_is_raycluster_yaml_but_for_its_starting_size(job):
    ours, theirs = copy.deepcopy(job["spec"]["rayClusterSpec"]), copy.deepcopy(manifest("raycluster.yaml")["spec"])
    for spec in (ours, theirs):
        for group in spec["workerGroupSpecs"]:
            group.pop("replicas", None)
    assert ours == theirs


def test_the_submitter_authenticates_with_the_token(job):
    container = job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    variables = {entry["name"]: entry for entry in container["env"]}
    assert variables["RAY_AUTH_MODE"]["value"] == "token"
    assert variables["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    assert "command" not in container, "KubeRay writes the `ray job submit` command when none is given"
