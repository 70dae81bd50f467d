"""deploy/kuberay/raycluster.yaml, and the cluster rayjob.yaml embeds: valid for KubeRay, GPUs where
the actors go, nothing exposed, the token everywhere, credentials only from Secrets."""

import re

import pytest

from gigacanvas.version import __version__
from tests.deploy.kuberay.crd import ROOT, dicts, manifest, schema_errors, strings

# Names of environment variables that hold secrets: they may only come from a Secret.
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
S3_SECRET = "gigacanvas-s3"


@pytest.fixture(params=["raycluster.yaml", "rayjob.yaml"])
def doc(request) -> dict:
    return manifest(request.param)


@pytest.fixture
def cluster(doc) -> dict:
    """The RayCluster spec: raycluster.yaml's own, or the one rayjob.yaml embeds."""
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def ray_containers(cluster: dict) -> dict[str, dict]:
    """The Ray container of each group, by role: KubeRay runs Ray in a pod's first container."""
    found = {"head": cluster["headGroupSpec"]["template"]["spec"]["containers"][0]}
    for group in cluster["workerGroupSpecs"]:
        found[f"worker group {group['groupName']}"] = group["template"]["spec"]["containers"][0]
    return found


def gpus(container: dict, section: str) -> int:
    return int(container.get("resources", {}).get(section, {}).get("nvidia.com/gpu", 0))


def env(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_matches_its_crd(name):
    assert schema_errors(manifest(name)) == []


def test_the_head_has_no_gpu(cluster):
    head = ray_containers(cluster)["head"]
    for section in ("requests", "limits"):
        assert not [r for r in head.get("resources", {}).get(section, {}) if "gpu" in r.lower()]
    assert cluster["headGroupSpec"].get("rayStartParams", {}).get("num-gpus", "0") == "0"


def test_gpu_workers_autoscale_from_zero(cluster):
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["version"] == "v2"  # its verdicts let a render wait for nodes
    assert cluster["workerGroupSpecs"], "no worker group: the actors need GPU workers"
    for group in cluster["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        assert group["minReplicas"] == 0, "GPUs would be paid for while nothing renders"
        assert 1 <= group["maxReplicas"] and group.get("replicas", 0) <= group["maxReplicas"]
        # Kubernetes schedules an extended resource by its limit; a request, if given, must equal it.
        assert gpus(container, "limits") >= 1
        assert gpus(container, "requests") in (0, gpus(container, "limits"))


def test_nothing_is_exposed_outside_the_cluster(cluster):
    head = cluster["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False) and "ingressOptions" not in head
    for node in dicts(cluster):
        assert "hostPort" not in node and not node.get("hostNetwork", False)


def test_every_ray_process_authenticates_with_the_token(doc, cluster):
    processes = {**ray_containers(cluster), "autoscaler": cluster.get("autoscalerOptions", {})}
    for role, container in processes.items():
        variables = env(container)
        assert variables.get("RAY_AUTH_MODE", {}).get("value") == "token", role
        assert variables["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"], role
    assert cluster.get("authOptions", {}).get("mode", "token") == "token"
    for node in dicts(doc):  # nowhere, submitter included, is token auth turned off
        if node.get("name") == "RAY_AUTH_MODE":
            assert node.get("value") == "token"
    assert not [s for s in strings(doc) if "RAY_AUTH_MODE=disabled" in s]


def test_credentials_come_only_from_secrets(doc, cluster):
    for node in dicts(doc):
        for entry in node.get("env", []) if isinstance(node.get("env"), list) else []:
            if SECRET_NAME.search(entry["name"]):
                assert "value" not in entry, f"{entry['name']} is written into the manifest"
                assert "secretKeyRef" in entry["valueFrom"], entry["name"]
        for source in node.get("envFrom", []) if isinstance(node.get("envFrom"), list) else []:
            assert set(source) == {"secretRef"}, source
    for role, container in ray_containers(cluster).items():  # the store is read and written on every node
        assert {"secretRef": {"name": S3_SECRET}} in container.get("envFrom", []), role
    assert not [s for s in strings(doc) if AWS_KEY_ID.search(s)]


def test_every_container_runs_the_image_deploy_dockerfile_builds(doc):
    base = re.search(r"^FROM rayproject/ray:(\S+)-py(\d+)-gpu$", (ROOT / "deploy/Dockerfile").read_text(), re.M)
    ray_version, python = base.groups()
    version = __version__  # what pyproject.toml's version reads (gigacanvas/version.py)
    images = {node["image"] for node in dicts(doc) if "image" in node}
    assert len(images) == 1, images
    assert images.pop().endswith(f"/gigacanvas:{version}-ray{ray_version}-py{python}-gpu")
    cluster = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray_version
