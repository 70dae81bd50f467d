"""The wavefront step loop on Ray: no per-step barrier, and still the whole-canvas loop's latent."""

import time

import numpy as np

from gigacanvas.cluster import steploop
from gigacanvas.cluster.dispatch import WorkerPool
from gigacanvas.cluster.steploop import (
    denoise,
    load_reducers,
    start_reducers,
    stop_reducers,
)
from gigacanvas.storage import LatentStore
from gigacanvas.tiling import initial_noise
from gigacanvas.tiling.shift import StepGrids
from tests.cluster.test_reducer import CHANNELS, _model, _scheduler, _whole

SLOW_TILE = 14  # the bottom-right tile: it reaches the bottom band only
SLOW = -1.0  # the guidance value that marks the slow tile's calls (the model ignores guidance)
HOLD_S = 60  # the longest the slow tile waits for a tile of step 1: with a barrier, it waits this long


def test_the_top_band_steps_on_while_a_slow_tile_holds_the_bottom_one(ray_cluster, tmp_path, monkeypatch):
    import ray

    grids = StepGrids(64, 40, 16, 4)
    grid = grids.grid(0)  # 5 rows x 3 columns of tiles
    assert len(grid) == 15 and grid.windows[SLOW_TILE].y == 48
    noise = initial_noise(4, CHANNELS, 64, 40)
    store = LatentStore(str(tmp_path / "s.zarr"))
    store.create({"seed": 4}, "fp", channels=CHANNELS, height=64, width=40, scale=8, bands=2)
    store.write_noise(noise)
    assert store.bands == ((0, 32), (32, 64))
    scheduler = _scheduler(3)
    steps = {float(t): i for i, t in enumerate(scheduler.timesteps)}

    step_1_ran = tmp_path / "a tile of step 1 ran"

    @ray.remote(num_cpus=0)
    class Worker:
        """`_model` on its windows; the slow tile's call of step 0 holds its band until a tile of
        step 1 has run (an event, not a duration: a loaded machine cannot make it pass or fail)."""

        def __init__(self):
            self.finished = []  # (step, slow, when)

        def predict_bands(self, cuts, timestep, guidance, *parts):
            from gigacanvas.tiling.bands import cut_rows, join_rows

            tiles = join_rows(parts)
            if guidance == SLOW and steps[timestep] == 0:
                deadline = time.monotonic() + HOLD_S
                while not step_1_ran.exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            elif steps[timestep] == 1:
                step_1_ran.touch()
            self.finished.append((steps[timestep], guidance == SLOW, time.time()))
            return (*cut_rows(_model(tiles, steps[timestep]), cuts), len(tiles))

        def log(self):
            return self.finished

    predict = steploop._Wavefront._predict

    def predict_marking_the_slow_tile(self, worker, key):
        guidance = self.guidance
        self.guidance = SLOW if SLOW_TILE in self._jobs(key[0])[key[1]][0] else guidance
        try:
            return predict(self, worker, key)
        finally:
            self.guidance = guidance

    monkeypatch.setattr(steploop._Wavefront, "_predict", predict_marking_the_slow_tile)
    workers = [Worker.remote() for _ in range(3)]
    reducers = start_reducers(store, grids, scheduler, CHANNELS)
    try:
        load_reducers(reducers, 0)
        denoise(store, WorkerPool(workers), reducers, grids, scheduler, 3, 1, 1.0)
        log = [entry for w in workers for entry in ray.get(w.log.remote())]
    finally:
        stop_reducers(reducers)
        for w in workers:
            ray.kill(w)
    slow_done = next(when for step, slow, when in log if slow and step == 0)
    ahead = [step for step, slow, when in log if step == 1 and when < slow_done]
    assert ahead, "no tile of step 1 ran while the slow tile of step 0 did: a barrier"
    assert len(log) == 45  # each tile once per step
    np.testing.assert_array_equal(LatentStore(store.url).read_latent()[0], _whole(noise, grids, 3, 1))
