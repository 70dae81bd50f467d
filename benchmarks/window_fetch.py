"""Where a worker should fetch a tile's window from: the band reducers, or the store.

The step loop ships windows from the band reducers, which hold their rows in memory (issue 9 asked
to measure that against reading them from the store). Both paths here are the real ones at
8192x8192 (latent 16 x 1024 x 1024, SD3.5's 1024 px tiles with 128 px overlap, 4 bands, a
file store on this machine's disk): a stand-in worker actor receives a batch of 2 windows either
as the reducers' `window_rows` object refs (joined with `join_rows`, as `Worker.predict_bands`
does) or by reading the same windows from the store's zarr arrays itself. Each figure is the
driver's round trip per batch, median of `--batches` batches, both paths alternated in one run.

    .venv/bin/python benchmarks/window_fetch.py [--batches 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    import numpy as np
    import ray

    from gigacanvas.cluster.plan import make_scheduler  # noqa: F401 - the scheduler import path of a render
    from gigacanvas.cluster.steploop import load_reducers, start_reducers, stop_reducers
    from gigacanvas.storage import LatentStore
    from gigacanvas.tiling import initial_noise, plan_tiles
    from gigacanvas.tiling.bands import batch_cuts

    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()

    from diffusers import FlowMatchEulerDiscreteScheduler

    channels, size = 16, 1024
    grid = plan_tiles(size, size, 128, 16)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(4)

    @ray.remote(num_cpus=0)
    class Fetcher:
        """A worker's side of both paths: what it holds before its model call."""

        def __init__(self):
            self.stores = {}

        def from_reducers(self, *parts):
            from gigacanvas.tiling.bands import join_rows

            return join_rows(parts).shape

        def from_store(self, url, windows):
            store = self.stores.get(url) or self.stores.setdefault(url, LatentStore(url))
            array = store.group["noise"]  # step 0's slot; a later step reads its band record first
            return np.stack([array[:, w.y : w.y + w.h, w.x : w.x + w.w] for w in windows]).shape

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"{tmp}/fetch.zarr"
        store = LatentStore(url)
        store.create({"seed": 0}, "fp", channels=channels, height=size, width=size, scale=8, bands=4)
        store.write_noise(initial_noise(0, channels, size, size))
        reducers = start_reducers(store, grid, scheduler, channels)
        fetcher = Fetcher.remote()
        try:
            load_reducers(reducers, 0)
            batches = grid.batches(2)
            rng = np.random.default_rng(0)
            picks = [batches[i] for i in rng.integers(0, len(batches), args.batches + 3)]
            times = {"reducers": [], "store": []}
            for n, batch in enumerate(picks):
                cuts = batch_cuts(grid.windows, batch, store.bands)
                start = time.perf_counter()
                parts = [reducers[band].window_rows.remote(batch) for band, _ in cuts]
                a = ray.get(fetcher.from_reducers.remote(*parts))
                middle = time.perf_counter()
                b = ray.get(fetcher.from_store.remote(url, [grid.windows[i] for i in batch]))
                end = time.perf_counter()
                assert tuple(a) == tuple(b)
                if n >= 3:  # warm-up: imports, the store's first open
                    times["reducers"].append(middle - start)
                    times["store"].append(end - middle)
        finally:
            stop_reducers(reducers)
    ray.shutdown()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"8192x8192, 4 bands, batches of 2 windows of {channels}x128x128 float32, {args.batches} batches")
    for k in ("reducers", "store"):
        print(f"from {k:9} median {med[k] * 1000:7.1f} ms  min {min(times[k]) * 1000:7.1f}  max {max(times[k]) * 1000:7.1f}")
    print(f"store / reducers: {med['store'] / med['reducers']:.2f}x")


if __name__ == "__main__":
    main()
