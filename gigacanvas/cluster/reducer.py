"""A band reducer: owns rows [y0, y1) of the latent through the denoise, so no process holds it all.

Per step it serves the rows of each tile's window that it owns (scaled as the scheduler's
`scale_model_input` asks: a non-flow sampler's model input), folds the tiles' predictions for
its rows in tile order in float64 (`TileBlender` with `rows`, on the grid of that step: with
shifted windows each step has its own, tiling/shift.py), steps its own copy of the scheduler on
its band and commits the band to the store (`LatentStore.commit_band`). The
schedulers gigacanvas runs are pointwise, so a band's step is the same rows of a whole-latent step
bit for bit; a stochastic sampler's step noise comes from the seed and the position
(actors/stepnoise.py), never from a stream, so that holds for them too. A tile's window is joined
from the bands under it, so a reducer needs no halo. On a torus (`--wrap`) nothing changes but
indices: a tile crossing the joined top and bottom edges takes rows from the first and the last
band (tiling/bands.py's cuts place them), one crossing the left and right edges takes its
columns modulo the width, and the blend folds each piece where it lands (tiling/blend.py).

`Reducer` is a plain object that tests drive without Ray; `ReducerActor` is its Ray shell, started
bare while the workers load and given its band (rows, store URL) by `setup`: it opens the store
by URL in its own process.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from gigacanvas.actors.stepnoise import keyed_noise
from gigacanvas.storage.lease import LeaseTicket
from gigacanvas.storage.store import LatentStore
from gigacanvas.tiling import TileBlender
from gigacanvas.tiling.bands import tile_rows_in_band
from gigacanvas.tiling.grid import TileGrid, Window
from gigacanvas.tiling.noise import step_noise_window
from gigacanvas.tiling.shift import StepGrids


class Reducer:
    """Band `band` of the store at `store_url`: its rows, its blend, its scheduler, its commits."""

    def __init__(
        self, store_url: str, band: int, grids: StepGrids, scheduler: Any, channels: int, ticket: LeaseTicket | None = None
    ):
        # With the driver's lease ticket, every commit first checks that the store is still this
        # render's: a reducer never writes into a store another render took over.
        self.store = LatentStore(store_url, ticket=ticket)
        self.band = band
        self.rows = self.store.bands[band]
        self.grids = grids
        self.channels = channels
        self._scheduler = scheduler  # `load` copies it: each band steps its own copy, from its step
        self.scheduler: Any = None
        self._seed: int | None = None  # the render's, read from the store once a sampler asks for noise
        self.blender: TileBlender | None = None
        self.windows: tuple[Window, ...] = ()
        self.grid: TileGrid | None = None
        self.latent: np.ndarray | None = None
        self._input: np.ndarray | None = None  # `latent` as the model takes it at this step
        self.step = 0

    def _start_blend(self) -> None:
        """An empty blend on the grid of the step this band holds (the driver asks for windows and
        sends predictions of that step only: steploop.py's order). A fixed grid keeps its blender."""
        grid = self.grids.grid(self.step)
        if self.blender is not None and self.blender.grid == grid:
            self.blender.reset()
        else:
            self.blender = TileBlender(grid, self.channels, rows=self.rows)
            self.windows = grid.windows
            self.grid = grid

    def load(self, step: int) -> int:
        """Read this band's rows after `step` steps (a state every band can be read at)."""
        import torch  # noqa: F401 - imported here, not in the first step's timing

        y0, y1 = self.rows
        self.latent, self.step = self.store.read_rows(y0, y1, step)
        self.scheduler = copy.deepcopy(self._scheduler)
        if hasattr(self.scheduler, "set_begin_index"):  # DDIM and DDPM step from the timestep's value alone
            self.scheduler.set_begin_index(self.step)
        self._input = None
        self._start_blend()
        return self.step

    def _model_input(self) -> np.ndarray:
        """This band's rows as the model takes them at this step: the scheduler's
        `scale_model_input` (Euler's division by sqrt(sigma^2 + 1); the identity or absent for
        flow matching and DDIM), made once per step. It is per pixel, so cutting the band's
        scaled rows is cutting the whole scaled latent, as the pipelines scale it."""
        if self._input is None:
            self._input = self.latent
            if hasattr(self.scheduler, "scale_model_input"):
                import torch

                timestep = self.scheduler.timesteps[self.step]
                scaled = self.scheduler.scale_model_input(torch.from_numpy(self.latent)[None], timestep)
                self._input = scaled[0].numpy()
        return self._input

    def window_rows(self, batch: Sequence[int]) -> list[np.ndarray | None]:
        """Per tile of `batch`: the rows of its window this band owns, its runs in tile order (None
        if it owns none). On a torus the rows and columns are taken modulo the canvas."""
        y0, y1 = self.rows
        grid = self.grid
        height = grid.height if grid.wrap_y else None
        latent = self._model_input()
        out: list[np.ndarray | None] = []
        for index in batch:
            window = self.windows[index]
            cut = tile_rows_in_band(window, y0, y1, height)
            if cut is None:
                out.append(None)
                continue
            pieces = []
            for a, b in cut:
                y = (window.y + a) % grid.height - y0
                rows = latent[:, y : y + b - a]
                if window.x + window.w <= grid.width:
                    pieces.append(rows[:, :, window.x : window.x + window.w])
                else:  # crossing the joined left and right edges
                    pieces.append(np.take(rows, np.arange(window.x, window.x + window.w) % grid.width, axis=2))
            out.append(np.ascontiguousarray(pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)))
        return out

    def add(self, batch: Sequence[int], preds: Sequence[np.ndarray | None]) -> None:
        """Predictions of a batch, cut to this band's rows (None for tiles that miss it)."""
        for index, pred in zip(batch, preds):
            if pred is not None:
                self.blender.add(index, pred)

    def advance(self) -> int:
        """Blend, step the scheduler on the band, commit it; returns the step now reached."""
        import torch

        timestep = self.scheduler.timesteps[self.step]
        output = torch.from_numpy(self.blender.result())[None]  # the model's: velocity, noise or v
        with keyed_noise(self.scheduler, self._step_noise):  # a stochastic sampler's noise: keyed, not a stream
            latent = self.scheduler.step(output, timestep, torch.from_numpy(self.latent)[None], return_dict=False)[0]
        self.latent, self._input = latent[0].numpy(), None
        self.step += 1
        self.store.commit_band(self.band, self.latent, self.step)
        self._start_blend()
        return self.step

    def _step_noise(self, shape: tuple[int, ...]):
        """This band's rows of the render's noise for the step being taken (actors/stepnoise.py)."""
        import torch

        y0, y1 = self.rows
        channels, _, width = self.latent.shape
        if shape != (1, channels, y1 - y0, width):
            raise RuntimeError(f"the scheduler asked for noise of shape {shape}, not the band's {(1, channels, y1 - y0, width)}")
        if self._seed is None:  # the seed the initial noise came from
            self._seed = int(self.store.attrs()["spec"]["seed"])
        return torch.from_numpy(step_noise_window(self._seed, self.step, channels, Window(y0, 0, y1 - y0, width)))[None]

    def peak_rss_mib(self) -> float:
        """This process's peak resident memory (for `gigacanvas bench`)."""
        from gigacanvas.cluster.bench import peak_rss_mib

        return peak_rss_mib()


class ReducerActor:
    """A `Reducer` in its own process, started before its store exists.

    A reducer's process spends seconds importing torch and diffusers (the scheduler's pickle
    needs them) before it can take its band; started bare beside the workers, it does that while
    they load the model, and `setup` hands it the band once the store is made.
    """

    def __init__(self):
        import diffusers.schedulers  # noqa: F401 - warm: unpickling `setup`'s scheduler needs it
        import torch  # noqa: F401

        self.reducer: Reducer | None = None

    def setup(self, *args: Any) -> None:
        self.reducer = Reducer(*args)

    def load(self, step: int) -> int:
        return self.reducer.load(step)

    def window_rows(self, batch: Sequence[int]) -> list[np.ndarray | None]:
        return self.reducer.window_rows(batch)

    def add(self, batch: Sequence[int], preds: Sequence[np.ndarray | None]) -> None:
        self.reducer.add(batch, preds)

    def advance(self) -> int:
        return self.reducer.advance()

    def peak_rss_mib(self) -> float:
        return self.reducer.peak_rss_mib()


def reducer_actor_class():
    """The Ray actor class, made on demand so importing this module never needs Ray.

    Zero logical CPUs: reducers ride beside the workers and never count against `--actors`.
    """
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(ReducerActor)


class _Method:
    def __init__(self, call):
        self.remote = call


class InProcessReducer:
    """A `Reducer` the driver runs itself, with an actor's `.method.remote()` calls.

    For a store only this process can see (`memory://`, whose bytes live in the driver anyway):
    a reducer actor would open an empty store of its own. Predictions are folded at `advance`,
    in the order they were handed in, so handing one in never blocks the dispatch.
    """

    def __init__(self, *args: Any):
        import ray

        reducer = Reducer(*args)
        adds: list = []

        def add(batch, ref):
            adds.append((batch, ref))
            return ray.put(None)

        def advance():
            for batch, ref in adds:
                reducer.add(batch, ray.get(ref))
            adds.clear()
            return ray.put(reducer.advance())

        self.load = _Method(lambda step: ray.put(reducer.load(step)))
        self.window_rows = _Method(lambda batch: ray.put(reducer.window_rows(batch)))
        self.peak_rss_mib = _Method(lambda: ray.put(reducer.peak_rss_mib()))
        self.add = _Method(add)
        self.advance = _Method(advance)
