"""ray_config.yaml: what `ray up` checks before it touches a cloud, and the facts a render relies on:
a head without GPU, GPU workers from zero, gigacanvas and a CUDA torch on every node, token auth."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ray_config.yaml"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
# AWS GPU instance families (g4dn, g5, g6, g6e, p4d, p5, ...): the provider this file uses.
GPU_INSTANCE = re.compile(r"^(g\d|p\d)")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def node_types(config: dict) -> tuple[dict, dict[str, dict]]:
    """(the head's node type, the other node types by name)."""
    types = dict(config["available_node_types"])
    return types.pop(config["head_node_type"]), types


def commands(config: dict, *sections: str) -> list[str]:
    return [command for section in sections for command in config.get(section, [])]


def test_matches_the_schema_inside_the_installed_ray(config, schema):
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(config)


def test_passes_the_checks_ray_up_runs_before_it_touches_a_cloud(config):
    # `ray up` fills in the provider's defaults, then validates (ray.autoscaler._private.commands).
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize(
    "path, key, value",
    [
        ([], "setup_command", []),
        (["available_node_types", "gpu_worker"], "min_worker", 0),
        (["docker"], "imag", "rayproject/ray"),
        (["available_node_types", "gpu_worker", "resources"], "GPU", 0.5),
    ],
)
def test_a_misspelt_or_mistyped_field_fails(config, schema, path, key, value):
    broken = copy.deepcopy(config)
    node = broken
    for step in path:
        node = node[step]
    node[key] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_head_has_no_gpu(config):
    head, _ = node_types(config)
    assert head["resources"].get("GPU", 0) == 0
    assert not GPU_INSTANCE.match(head["node_config"]["InstanceType"])


def test_gpu_workers_scale_from_zero(config):
    _, workers = node_types(config)
    assert workers, "no worker type: the actors need GPU workers"
    for name, worker in workers.items():
        assert worker["resources"]["GPU"] >= 1, name
        assert GPU_INSTANCE.match(worker["node_config"]["InstanceType"]), name
        assert worker["min_workers"] == 0, f"{name}: GPUs would be paid for while nothing renders"
        assert 1 <= worker["max_workers"] <= config["max_workers"], name


def test_every_node_installs_this_gigacanvas_and_the_makefiles_cuda_torch(config):
    setup = commands(config, "setup_commands")  # every node; head_/worker_setup_commands add to it
    mounts = {remote: local for remote, local in config["file_mounts"].items()}
    assert mounts["~/gigacanvas/gigacanvas"] == "./gigacanvas"
    assert mounts["~/gigacanvas/pyproject.toml"] == "./pyproject.toml"
    assert any(re.search(r"pip install .*~/gigacanvas\b", command) for command in setup)
    pin = re.search(r"torch==([\w.]+)", (ROOT / "Makefile").read_text()).group(1)
    torch = [command for command in setup if "torch" in command]
    assert torch and all(f"torch=={pin}" in command for command in torch)
    assert not [command for command in setup if "download.pytorch.org/whl/cpu" in command]


def test_every_ray_start_uses_the_token_and_keeps_the_dashboard_private(config):
    starts = commands(config, "head_start_ray_commands", "worker_start_ray_commands")
    for command in [c for c in starts if "ray start" in c]:
        assert "RAY_AUTH_MODE=token ray start" in command, command
    head_start = " ".join(commands(config, "head_start_ray_commands"))
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    assert "RAY_enable_autoscaler_v2=1 " in head_start  # its verdicts let a render wait for nodes
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=disabled" not in json.dumps(config)


def test_the_image_is_deploy_dockerfiles_base_with_the_installed_ray(config):
    """`ray up` runs the Ray installed here, and must find the same Ray on the nodes."""
    base = re.search(r"^FROM (\S+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.M).group(1)
    assert config["docker"]["image"] == base
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py")


def test_no_credentials_in_the_file():
    text = CONFIG.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text)
    assert not re.search(r"(?i)aws_secret_access_key\s*[:=]|RAY_AUTH_TOKEN\s*=", text)
