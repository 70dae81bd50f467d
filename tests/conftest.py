"""Shared fixtures: one tiny model and one Ray cluster for the whole session.

`ray.init` costs seconds and most of a GiB, so every test that needs Ray shares one local
cluster; renders connect to it because `render` reuses an initialised Ray.
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import settings

# Shared 2-core machines: a property's examples must not fail on wall-clock deadlines.
settings.register_profile("gigacanvas", deadline=None)
settings.load_profile("gigacanvas")

os.environ.setdefault("GIGACANVAS_ACTOR_START_TIMEOUT", "120")
# The built-in model's cache goes to a temp folder: tests never write to the user's home.
os.environ["GIGACANVAS_CACHE"] = tempfile.mkdtemp(prefix="gigacanvas-test-cache-")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.tiny import build_tiny_model

    quiet_libraries()
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd3"))


@pytest.fixture(scope="session")
def ray_cluster():
    import logging

    import ray

    # address="local": a new cluster of our own, never one that another `ray start` left named
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()
