"""Validate manifests against KubeRay's CRDs the way `kubectl apply` does, without a cluster.

A CRD's openAPIV3Schema is a structural schema: Kubernetes rejects a field the schema does not
list (kubectl's default strict field validation) unless that object allows extra keys
(`additionalProperties`, a map) or sets `x-kubernetes-preserve-unknown-fields`. Plain JSON Schema
allows unknown keys everywhere, so `strict` writes that rule into the schema as
`additionalProperties: false`. Hand-written because no maintained Python package validates against
CRDs offline; CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "tests" / "data" / "kuberay" / "crds"
MANIFESTS = ROOT / "deploy" / "kuberay"
# The fields of ObjectMeta a manifest may set (the CRD leaves metadata to the API server).
METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}


def load_yaml(path: Path) -> list[Any]:
    """Every document in a YAML file; libyaml when present (the CRDs are megabytes)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc is not None]


def strict(schema: Any) -> Any:
    """A copy of a structural schema that rejects unknown fields where Kubernetes does."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schema(kind: str, version: str = "v1", *, strict_fields: bool = True) -> dict:
    """The openAPIV3Schema of `kind` (RayCluster, RayJob) at `version`, strict unless asked not to."""
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in load_yaml(path):
            if crd["spec"]["names"]["kind"] != kind:
                continue
            for served in crd["spec"]["versions"]:
                if served["name"] == version:
                    schema = served["schema"]["openAPIV3Schema"]
                    return strict(schema) if strict_fields else copy.deepcopy(schema)
    raise LookupError(f"no CRD in {CRDS} defines {kind} {version}")


def schema_errors(manifest: dict, *, strict_fields: bool = True) -> list[str]:
    """What the API server would refuse in `manifest`, one line per error; empty when it passes."""
    group, _, version = manifest.get("apiVersion", "").partition("/")
    errors = [] if group == "ray.io" else [f"apiVersion {manifest.get('apiVersion')!r} is not ray.io/..."]
    schema = crd_schema(manifest.get("kind", ""), version, strict_fields=strict_fields)
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(map(str, error.absolute_path)) or "(top)"
        errors.append(f"{where}: {error.message}")
    unknown = set(manifest.get("metadata", {})) - METADATA_FIELDS
    errors += [f"metadata.{key}: not a field a manifest sets" for key in sorted(unknown)]
    return errors


def manifest(name: str) -> dict:
    """The one document of deploy/kuberay/NAME."""
    docs = load_yaml(MANIFESTS / name)
    assert len(docs) == 1, f"{name} holds {len(docs)} documents; one resource per file"
    return docs[0]


def dicts(node: Any):
    """Every mapping inside a parsed manifest, depth first."""
    if isinstance(node, dict):
        yield node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            yield from dicts(item)


def strings(node: Any):
    """Every string value inside a parsed manifest."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
