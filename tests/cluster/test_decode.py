"""The decode driver (cluster/decode.py) on a plain Worker in this process: tiles land in the
store's image with no gap or double write, the exact mode equals the one-piece decode, the
answer does not depend on which worker answered, and the fast and blend modes run."""

import numpy as np
import pytest

from gigacanvas.cluster.decode import decode_into_store
from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.storage.store import LatentStore


class _Method:
    def __init__(self, fn, returns=1):
        self.fn, self.returns = fn, returns

    def options(self, num_returns=1):
        return _Method(self.fn, num_returns)

    def remote(self, *args, **kwargs):
        import ray

        args = [ray.get(a) if isinstance(a, ray.ObjectRef) else a for a in args]
        out = self.fn(*args, **kwargs)
        return ray.put(out) if self.returns == 1 else [ray.put(o) for o in out]


class _InProcess:
    """A plain `Worker` behind the `.method.remote(...)` calls decode_into_store makes of an actor."""

    def __init__(self, worker, calls):
        for name in ("decode_layout", "decode_head", "decode_run", "decode_sample", "decode"):
            fn = getattr(worker, name)
            setattr(self, name, _Method(lambda *a, fn=fn, name=name, **k: (calls.append(name), fn(*a, **k))[1]))


@pytest.fixture(scope="module")
def worker(tiny_model):
    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import Worker

    w = Worker(open_model(tiny_model))
    w.load("fp32")
    return w


def _store(name, latent):
    store = LatentStore(f"memory://gc-decode/{name}.zarr")
    store.create({"seed": 1}, "abc", channels=16, height=latent.shape[1], width=latent.shape[2], scale=8, bands=2)
    store.write_noise(latent)  # a store at step 0: its latent is what gets decoded
    return store


def _decode(worker, name, latent, tile_lat, mode, workers=1):
    calls: list = []
    store = _store(name, latent)
    before = store.read_image()
    assert not before.any()
    pool = WorkerPool([_InProcess(worker, calls) for _ in range(workers)])
    report = decode_into_store(pool, store, tile_lat, mode)
    return store.read_image(), report, calls


def test_exact_tiles_fill_the_image_and_equal_the_one_piece_decode(worker, ray_cluster):
    latent = np.random.default_rng(0).standard_normal((16, 24, 40)).astype(np.float32) * 2
    whole, one, _ = _decode(worker, "whole", latent, 0, "exact")
    assert one.tiles == 1 and one.passes == 1  # the canvas in one tile: its own statistics, one call
    tiled, report, calls = _decode(worker, "tiled", latent, 16, "exact", workers=2)
    assert report.tiles == 6 and report.halo == 9
    # 17 GroupNorms, a checkpoint after each of the first three up-blocks, the pixels
    assert report.passes == 21 and calls.count("decode_head") == 1 and calls.count("decode_run") == 6 * 21
    assert whole.std() > 5
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 1 and diff.mean() <= 0.05


def test_no_tile_is_written_twice_or_missed(worker, ray_cluster, monkeypatch):
    writes = []
    real = LatentStore.write_image_window

    def spy(self, y, x, pixels):
        writes.append((y, x, *pixels.shape[:2]))
        real(self, y, x, pixels)

    monkeypatch.setattr(LatentStore, "write_image_window", spy)
    latent = np.random.default_rng(1).standard_normal((16, 20, 36)).astype(np.float32)
    _decode(worker, "cover", latent, 16, "fast")
    owner = np.zeros((160, 288), int)
    for y, x, h, w in writes:
        owner[y : y + h, x : x + w] += 1
    assert (owner == 1).all() and len(writes) == 6


def test_fast_and_blend_modes_decode_too(worker, ray_cluster):
    latent = np.random.default_rng(2).standard_normal((16, 16, 24)).astype(np.float32)
    exact, _, _ = _decode(worker, "e", latent, 8, "exact")
    fast, report, calls = _decode(worker, "f", latent, 8, "fast")
    # the first up-block's 4 GroupNorms, a checkpoint pass at its end, the sample, the pixels
    assert report.passes == 7 and calls.count("decode_sample") == 1
    # the crops hold at most FAST_STATS_SIDE squared: a canvas this small is one crop of itself,
    # so the fast mode is exact here too
    assert np.abs(fast.astype(int) - exact.astype(int)).max() <= 1
    blend, report, calls = _decode(worker, "b", latent, 8, "blend")
    assert report.mode == "blend" and "decode" in calls and blend.std() > 5


def test_fast_mode_crops_on_the_workers_are_the_in_process_decodes(worker, ray_cluster, monkeypatch):
    """With a sample smaller than the canvas (3 x 3 crops of 4 latent pixels), the crops the
    driver plans and a worker pastes from the checkpoint give the pixels decode_in_tiles does."""
    from gigacanvas.actors.vaedecode import decode_in_tiles, to_uint8
    from gigacanvas.cluster import decode

    monkeypatch.setattr(decode, "FAST_STATS_SIDE", 12)
    monkeypatch.setattr(decode, "SAMPLE_CORE", 4)
    latent = np.random.default_rng(2).standard_normal((16, 16, 24)).astype(np.float32)
    fast, _, calls = _decode(worker, "fc", latent, 8, "fast", workers=2)
    assert calls.count("decode_sample") == 1
    stages = worker._loaded().decode_stages()
    ours = to_uint8(decode_in_tiles(stages, latent, 8, side=12, sample_core=4))
    np.testing.assert_array_equal(fast, ours)
    exact, _, _ = _decode(worker, "fe", latent, 8, "exact")
    assert np.abs(fast.astype(int) - exact.astype(int)).mean() > 0  # estimated: the crops were used


def test_the_head_reads_the_latent_in_chunk_rows_not_in_the_stores_bands(worker, ray_cluster, monkeypatch):
    """The driver hands the head the latent in pieces of at most LATENT_CHUNK rows, whatever the
    number of bands (one per reducer: two bands would be half the latent each), at the committed
    step, and the picture is the one the whole latent gives."""
    from gigacanvas.storage import store as store_module

    latent = np.random.default_rng(3).standard_normal((16, 24, 16)).astype(np.float32)
    whole, _, _ = _decode(worker, "hw", latent, 0, "fast")
    reads = []
    real = LatentStore.read_rows

    def spy(self, y0, y1, step=None):
        reads.append((y0, y1, step))
        return real(self, y0, y1, step)

    monkeypatch.setattr(store_module, "LATENT_CHUNK", 8)
    monkeypatch.setattr(LatentStore, "read_rows", spy)
    chunked, _, _ = _decode(worker, "hc", latent, 0, "fast")
    assert [(y0, y1) for y0, y1, _ in reads] == [(0, 8), (8, 16), (16, 24)]
    assert {step for _, _, step in reads} == {0}
    np.testing.assert_array_equal(chunked, whole)
