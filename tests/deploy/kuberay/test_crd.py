"""The CRD validator fails where `kubectl apply` would: misspelt fields, wrong types, other kinds."""

import copy

import jsonschema
import pytest

from tests.deploy.kuberay.crd import crd_schema, manifest, schema_errors, strict


def test_the_crds_define_ray_io_v1_for_both_kinds():
    for kind in ("RayCluster", "RayJob"):
        schema = crd_schema(kind)
        assert {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])


def test_strict_closes_objects_but_keeps_maps_and_preserved_fields_open():
    schema = strict({
        "type": "object",
        "properties": {
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "closed": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    })
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid({"free": {"anything": 1}, "map": {"any-key": "v"}, "closed": {"a": 1}})
    assert not validator.is_valid({"closed": {"b": 1}})
    assert not validator.is_valid({"other": 1})
    assert not validator.is_valid({"map": {"k": 1}})


def _edit(doc: dict, path: list, key, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for step in path:
        node = node[step]
    node[key] = value
    return doc


RAYCLUSTER_BREAKAGES = [
    # (where, key, value, what the error names)
    (["spec"], "enableInTreeAutoscalling", True, "enableInTreeAutoscalling"),
    (["spec", "workerGroupSpecs", 0], "minReplica", 0, "minReplica"),
    (["spec", "headGroupSpec", "template", "spec", "containers", 0], "envFrm", [], "envFrm"),
    (["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "resources"], "limit", {}, "limit"),
    (["spec", "workerGroupSpecs", 0], "minReplicas", "0", "'0' is not of type 'integer'"),
    (["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "resources", "limits"],
     "nvidia.com/gpu", "one", "does not match"),
    (["metadata"], "nmae", "gigacanvas", "metadata.nmae"),
]


@pytest.mark.parametrize("path, key, value, named", RAYCLUSTER_BREAKAGES)
def test_a_broken_raycluster_fails(path, key, value, named):
    broken = _edit(manifest("raycluster.yaml"), path, key, value)
    assert any(named in error for error in schema_errors(broken)), schema_errors(broken)


def test_the_crd_alone_lets_a_misspelt_field_through_and_strict_does_not():
    """Why `strict` exists: KubeRay's schema leaves unknown keys to the API server's field validation."""
    broken = _edit(manifest("raycluster.yaml"), ["spec", "workerGroupSpecs", 0], "minReplica", 0)
    assert schema_errors(broken, strict_fields=False) == []
    assert schema_errors(broken) != []


@pytest.mark.parametrize(
    "path, key, value",
    [
        (["spec"], "shutdownAfterJobFinish", True),
        (["spec", "rayClusterSpec", "workerGroupSpecs", 0], "maxReplica", 8),
        (["spec", "submitterPodTemplate", "spec", "containers", 0], "enviroment", []),
    ],
)
def test_a_broken_rayjob_fails(path, key, value):
    broken = _edit(manifest("rayjob.yaml"), path, key, value)
    assert any(key in error for error in schema_errors(broken)), schema_errors(broken)


def test_a_manifest_of_another_api_group_or_version_fails():
    doc = manifest("raycluster.yaml")
    assert schema_errors({**doc, "apiVersion": "example.com/v1"})
    with pytest.raises(LookupError):
        schema_errors({**doc, "apiVersion": "ray.io/v2"})
