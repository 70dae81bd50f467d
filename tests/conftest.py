"""Shared fixtures: one tiny model and one Ray cluster for the whole session (per xdist worker).

`ray.init` costs seconds and most of a GiB, so every test that needs Ray shares one local
cluster; renders connect to it because `render` reuses an initialised Ray. A render's actors
spend seconds of CPU importing torch and diffusers, so a render that several modules compare
with is made once (`one_actor_render`).
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import settings

from tests.helpers import LOOPBACK_RAY

# Shared 2-core machines: a property's examples must not fail on wall-clock deadlines.
settings.register_profile("gigacanvas", deadline=None)
settings.load_profile("gigacanvas")
# Actor start-ups keep the product's bound (GIGACANVAS_ACTOR_START_TIMEOUT, 300 s): a tighter one
# turns a loaded machine into failures; a render that fails for real fails sooner than that.

# Every Ray the tests start (the shared cluster, cluster_utils' nodes, `ray start` heads, the
# processes they spawn) listens and connects on loopback only: Ray otherwise resolves even an
# explicit 127.0.0.1 to the machine's network address (services.resolve_ip_for_localhost), and
# this switch, read when Ray is imported, is the one that keeps a node's address at 127.0.0.1.
os.environ.update(LOOPBACK_RAY)

# The built-in model's cache goes to a temp folder: tests never write to the user's home.
os.environ["GIGACANVAS_CACHE"] = tempfile.mkdtemp(prefix="gigacanvas-test-cache-")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.tiny import build_tiny_model

    quiet_libraries()
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd3"))


@pytest.fixture(scope="session")
def tiny_flux_model(tmp_path_factory) -> str:
    """The tiny Flux.1 [dev]-layout model, as `demo-model --family flux` writes it."""
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.tiny import build_tiny_model

    quiet_libraries()
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-flux", name="flux"))


@pytest.fixture(scope="session")
def tiny_schnell_model(tmp_path_factory) -> str:
    """The tiny Flux.1 [schnell]-layout model: no guidance embedding, no dynamic shifting."""
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.flux.tiny import build_tiny_schnell_pipeline

    quiet_libraries()
    path = tmp_path_factory.mktemp("models") / "tiny-schnell"
    build_tiny_schnell_pipeline().save_pretrained(path, safe_serialization=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_sdxl_model(tmp_path_factory) -> str:
    """The tiny SDXL-layout model, as `demo-model --family sdxl` writes it."""
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.tiny import build_tiny_model

    quiet_libraries()
    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", name="sdxl"))


@pytest.fixture(scope="session")
def ray_cluster():
    import logging

    import ray

    # address="local": a new cluster of our own, never one that another `ray start` left named
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


# Renders in this process keep their loaded workers for the next render of the same model and
# actor shape (gigacanvas.keep_workers; cluster/warm.py): a worker's start-up (torch, diffusers,
# the model) is most of a tiny render's CPU. Each test file starts and ends without any (below),
# so a file that starts actors of its own finds the cluster's CPUs free. Subprocesses (the CLI
# tests, the multinode scenarios) keep the default: a render's workers end with it.
from gigacanvas.cluster import warm  # noqa: E402 - after the environment above

warm.keep_workers(True)


@pytest.fixture(autouse=True, scope="module")
def _no_kept_workers_across_files():
    warm.release_workers()
    yield
    warm.release_workers()


@pytest.fixture(scope="session")
def one_actor_render(tiny_model, ray_cluster, tmp_path_factory):
    """MULTI_TILE (tests/helpers.py) on one actor of this one-node cluster: (result, its pixels).

    One band, its reducer in this process (memory://, no reducer actor to start). The renders
    compared with it (other actor counts, a resume, three nodes) keep their bands in reducer
    actors: the bits depend on neither.
    """
    import numpy as np
    from PIL import Image

    from gigacanvas import RenderSpec, render
    from tests.helpers import MULTI_TILE

    out = tmp_path_factory.mktemp("one-actor") / "one.png"
    spec = RenderSpec(model=tiny_model, actors=1, store="memory://gc-session/one-actor.zarr", out=str(out), **MULTI_TILE)
    result = render(spec, progress=False)
    with Image.open(out) as im:
        return result, np.asarray(im.convert("RGB"))


def pytest_collection_modifyitems(items):
    """test_multinode.py's checks first: `make test` runs the tests on two xdist workers, a file
    to each at a time (Makefile), and the one that takes this file's minutes-long renders leaves
    the rest to the other; scheduled last, they would be the whole run's tail."""
    items.sort(key=lambda item: item.path.name != "test_multinode.py")  # stable: the rest keep their order
