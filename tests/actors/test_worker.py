"""The worker as a plain object, no Ray: encode once, predict guided batches, decode."""

import numpy as np
import pytest

from gigacanvas.actors.loading import open_model
from gigacanvas.actors.worker import Worker


@pytest.fixture(scope="module")
def worker(tiny_model):
    w = Worker(open_model(tiny_model), threads=1)
    w.load("fp32")
    w.set_conditioning(w.encode("a red fox", "blurry", 4.0))
    return w


def test_predict_is_per_tile_whatever_the_batch(worker):
    tiles = np.random.default_rng(0).standard_normal((3, 16, 32, 24)).astype(np.float32)
    batch = worker.predict(tiles, 500.0, 4.0)
    assert batch.shape == tiles.shape and batch.dtype == np.float32
    single = np.concatenate([worker.predict(tiles[i : i + 1], 500.0, 4.0) for i in range(3)])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_guidance_changes_the_prediction(worker):
    tiles = np.random.default_rng(1).standard_normal((1, 16, 32, 32)).astype(np.float32)
    assert not np.allclose(worker.predict(tiles, 700.0, 4.0), worker.predict(tiles, 700.0, 8.0))


def test_decode_scales_to_pixels(worker):
    latents = np.random.default_rng(2).standard_normal((1, 16, 8, 12)).astype(np.float32)
    pixels = worker.decode(latents)
    assert pixels.shape == (1, 3, 64, 96)


def test_predict_needs_conditioning_and_decode_needs_load(tiny_model):
    worker = Worker(open_model(tiny_model))
    with pytest.raises(RuntimeError, match="load must run"):
        worker.decode(np.zeros((1, 16, 8, 8), np.float32))
    worker.load("fp32")
    with pytest.raises(RuntimeError, match="set_conditioning"):
        worker.predict(np.zeros((1, 16, 8, 8), np.float32), 1.0, 1.0)
