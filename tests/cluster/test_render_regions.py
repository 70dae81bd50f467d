"""Regional prompts through a whole render: the blend pinned against a plain render, and the bits
independent of the number of actors.

The renders here run `render` with their workers in this process, each a `Worker` behind an
actor's `.method.remote()` calls with the thread count an actor holds: no actor to start, which
is most of a tiny render's time. Their latents are a Ray actor's bit for bit (the first test
compares with conftest's render on an actor; two Ray actors gave the poster's latent too, when
measured, at two minutes of this 2-core machine's time: too much for CI).
"""

import numpy as np
import pytest

from gigacanvas import RenderSpec, render
from gigacanvas.storage import LatentStore
from tests.helpers import MULTI_TILE

POSTER = {**MULTI_TILE, "regions": ["0,0,512,120:a stormy sky", "300,200,200,100:a title space"]}


class _Call:
    """An actor method's `.remote` / `.options(num_returns=n).remote`, run here: refs in, refs out."""

    def __init__(self, fn, returns: int = 1):
        self.fn, self.returns = fn, returns

    def options(self, num_returns: int = 1):
        return _Call(self.fn, num_returns)

    def remote(self, *args, **kwargs):
        import ray

        args = [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args]  # as Ray resolves them
        out = self.fn(*args, **kwargs)
        return ray.put(out) if self.returns == 1 else [ray.put(o) for o in out]


class _Here:
    def __init__(self, worker):
        self.worker = worker

    def __getattr__(self, name):
        return _Call(getattr(self.worker, name))


@pytest.fixture(scope="module")
def workers() -> list:
    """The in-process workers, loaded once for this module's renders (as a resumed render's actors
    would be: the model is the same, the conditioning is set per render)."""
    return []


@pytest.fixture
def in_process(monkeypatch, ray_cluster, workers):
    """`render`'s workers run in this process (torch's thread count restored after)."""
    import torch

    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster import placement

    def start_workers(info, count, shape, notify=None):
        torch.set_num_threads(shape.threads)  # as each actor's process: the threads are part of the bits
        while len(workers) < count:
            workers.append(Worker(info, shape.threads))
        return [_Here(w) for w in workers[:count]], [w.capabilities() for w in workers[:count]]

    def load_workers(started, precision):
        for here in started:
            if here.worker.adapter is None or here.worker.adapter.precision != precision:
                here.worker.load(precision)

    threads = torch.get_num_threads()
    monkeypatch.setattr(placement, "start_workers", start_workers)
    monkeypatch.setattr(placement, "load_workers", load_workers)
    monkeypatch.setattr(placement, "finish_workers", lambda *args: None)
    yield
    torch.set_num_threads(threads)


def _latent(result) -> np.ndarray:
    latent, step = LatentStore(result.store).read_latent()
    assert step == MULTI_TILE["steps"]
    return latent


def test_a_region_over_the_whole_canvas_is_its_prompt_as_the_base(one_actor_render, tiny_model, in_process):
    """Base prompt "a lighthouse", one region of the whole canvas with feather 0 drawing conftest's
    render's prompt: that render's latent, bit for bit (the base weighs nowhere, so no tile predicts
    it, and the region's weight is exactly 1). A region repeating the base prompt changes nothing."""
    whole = {**MULTI_TILE, "prompt": "a lighthouse", "regions": [f"0,0,512,320:{MULTI_TILE['prompt']}"], "region_feather": 0}
    same = {**MULTI_TILE, "regions": [f"100,50,200,100:{MULTI_TILE['prompt']}"]}
    theirs = _latent(one_actor_render[0])
    for n, spec in enumerate((whole, same)):
        result = render(
            RenderSpec(model=tiny_model, actors=1, store=f"memory://gc-regions/pin{n}.zarr", **spec), progress=False,
            denoise_only=True,
        )
        np.testing.assert_array_equal(_latent(result), theirs)


def test_a_poster_with_two_regions_is_the_same_on_one_and_two_workers(one_actor_render, tiny_model, in_process, monkeypatch):
    """A sky band and a title box with soft edges (tiles predicting up to three prompts): one
    worker's latent, bit for bit, on two workers and two bands (the denoise only: the decode does
    not see the regions), and not the base prompt's alone."""
    from gigacanvas.cluster import steploop

    one = render(RenderSpec(model=tiny_model, actors=1, store="memory://gc-regions/one.zarr", **POSTER), progress=False, denoise_only=True)
    monkeypatch.setattr(steploop, "BAND_BYTES", 1)  # two bands
    two = render(RenderSpec(model=tiny_model, actors=2, store="memory://gc-regions/two.zarr", **POSTER), progress=False, denoise_only=True)
    assert two.actors == 2 and len(LatentStore(two.store).bands) == 2
    np.testing.assert_array_equal(_latent(two), _latent(one))
    assert np.abs(_latent(one) - _latent(one_actor_render[0])).max() > 0.1
