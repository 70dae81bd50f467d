"""Band reducers without Ray: any split of the latent into bands steps it bit for bit as a whole."""

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigacanvas.cluster.reducer import Reducer
from gigacanvas.storage import LatentStore
from gigacanvas.tiling import TileBlender, initial_noise, plan_tiles
from gigacanvas.tiling.bands import batch_cuts, cut_rows, join_rows
from gigacanvas.tiling.shift import StepGrids

CHANNELS = 4


def _flow(**config):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, **config)


def _ancestral():
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler()


def _scheduler(steps, make=_flow):
    scheduler = make()
    scheduler.set_timesteps(steps, device="cpu")
    return scheduler


def _model(tiles, step):
    """A stand-in prediction that depends on every value of its tile (so windows must be right)."""
    return (np.tanh(tiles) * np.float32(0.7) + tiles.mean(axis=(1, 2, 3), keepdims=True) + np.float32(step)).astype(np.float32)


def _gather(latent, window):
    """A tile's window of the whole latent, its rows and columns modulo the canvas (a torus's
    wrapped window; the plain slice for one inside the canvas). C order: the stand-in model's
    float32 mean sums in memory order."""
    _, height, width = latent.shape
    rows = (window.y + np.arange(window.h)) % height
    return np.ascontiguousarray(latent[:, rows][:, :, (window.x + np.arange(window.w)) % width])


def _whole(noise, grids, steps, batch, make=_flow, seed=None):
    """The whole latent stepped at once, each step on its grid; with `seed`, a stochastic
    sampler's noise is the whole latent's keyed step noise (what every band split must reproduce)."""
    import torch

    from gigacanvas.actors.stepnoise import keyed_noise
    from gigacanvas.tiling.grid import Window
    from gigacanvas.tiling.noise import step_noise_window

    scheduler = _scheduler(steps, make)
    latent = noise
    for step in range(steps):
        grid = grids.grid(step)
        blender = TileBlender(grid, CHANNELS)
        model_input = latent  # as the pipelines scale it for a non-flow sampler (Euler: / sqrt(sigma^2 + 1))
        if hasattr(scheduler, "scale_model_input"):
            model_input = scheduler.scale_model_input(torch.from_numpy(latent)[None], scheduler.timesteps[step])[0].numpy()
        for tiles in grid.batches(batch):
            windows = np.stack([_gather(model_input, grid.windows[i]) for i in tiles])
            for i, pred in zip(tiles, _model(windows, step)):
                blender.add(i, pred)
        velocity = torch.from_numpy(blender.result())[None]
        t = scheduler.timesteps[step]
        whole = Window(0, 0, grid.height, grid.width)
        draw = (lambda shape, s=step: torch.from_numpy(step_noise_window(seed, s, CHANNELS, whole))[None]) if seed is not None else None
        with keyed_noise(scheduler, draw) if draw else contextlib.nullcontext():
            latent = scheduler.step(velocity, t, torch.from_numpy(latent)[None], return_dict=False)[0][0].numpy()
    return latent


def _banded(url, noise, grids, steps, batch, bands, order_seed=0, make=_flow, until=None):
    """Band reducers from the store's committed step (a new store: from the noise) to `until`."""
    store = LatentStore(url)
    if noise is not None:
        store.create({"seed": 1}, "fp", channels=CHANNELS, height=grids.height, width=grids.width, scale=8, bands=bands)
        store.write_noise(noise)
    start = store.committed_step()
    reducers = [Reducer(url, b, grids, _scheduler(steps, make), CHANNELS) for b in range(len(store.bands))]
    for r in reducers:
        r.load(start)
    rng = np.random.default_rng(order_seed)
    for step in range(start, steps if until is None else until):
        grid = grids.grid(step)
        jobs = grid.batches(batch)
        for k in rng.permutation(len(jobs)):  # predictions arrive in any order
            tiles = jobs[k]
            cuts = batch_cuts(grid.windows, tiles, store.bands, grid.height if grid.wrap_y else None)
            windows = join_rows([reducers[b].window_rows(tiles) for b, _ in cuts], cuts)
            for (b, _), preds in zip(cuts, cut_rows(_model(windows, step), cuts)):
                reducers[b].add(tiles, preds)
        for r in reducers:
            assert r.advance() == step + 1
    return store


@pytest.mark.parametrize("bands", [1, 2, 3])
def test_a_band_split_steps_the_latent_bit_for_bit(tmp_path, bands):
    grid = StepGrids(40, 56, 16, 4)
    noise = initial_noise(3, CHANNELS, 40, 56)
    store = _banded(str(tmp_path / "s.zarr"), noise, grid, 3, 2, bands, order_seed=bands)
    assert len(store.bands) == bands
    latent, step = LatentStore(store.url).read_latent()
    assert step == 3
    np.testing.assert_array_equal(latent, _whole(noise, grid, 3, 2))


def _from_sdxl(name):
    """`--scheduler name` on SDXL: the class configured from SDXL's scheduler config."""
    import diffusers

    return lambda: getattr(diffusers, name).from_config(_euler().config)


def _flow_lcm():
    from diffusers import FlowMatchLCMScheduler

    return FlowMatchLCMScheduler.from_config(_flow().config)


# Every stochastic sampler a family allows for --scheduler (actors/models/), each drawing its step noise through randn_tensor
@pytest.mark.parametrize(
    "make",
    [lambda: _flow(stochastic_sampling=True), _ancestral, _flow_lcm, _from_sdxl("DDPMScheduler"), _from_sdxl("LCMScheduler"), _from_sdxl("TCDScheduler")],
    ids=["flow-stochastic", "euler-ancestral", "flow-lcm", "ddpm", "lcm", "tcd"],
)
def test_a_stochastic_samplers_step_noise_is_keyed_so_any_band_split_is_the_whole_latent(tmp_path, make):
    grid = StepGrids(40, 56, 16, 4)
    noise = initial_noise(3, CHANNELS, 40, 56)
    want = _whole(noise, grid, 3, 2, make, seed=1)  # the store's seed
    assert not np.array_equal(want, _whole(noise, grid, 3, 2, make, seed=2))  # the step noise counts
    for bands in (1, 3):
        store = _banded(str(tmp_path / f"s{bands}.zarr"), noise, grid, 3, 2, bands, order_seed=bands, make=make)
        np.testing.assert_array_equal(LatentStore(store.url).read_latent()[0], want)


@pytest.mark.parametrize("bands", [1, 3])
def test_shifted_windows_step_the_whole_latent_bit_for_bit_and_resume_exactly(tmp_path, bands):
    grids = StepGrids(40, 56, 16, 0, seed=9)
    assert grids.grid(0) != grids.grid(1) != grids.grid(2)
    noise = initial_noise(3, CHANNELS, 40, 56)
    want = _whole(noise, grids, 3, 2)
    assert not np.array_equal(want, _whole(noise, StepGrids(40, 56, 16, 0), 3, 2))  # the grids count
    url = str(tmp_path / "s.zarr")
    _banded(url, noise, grids, 3, 2, bands, order_seed=bands, until=1)  # stopped after step 1
    assert LatentStore(url).committed_step() == 1
    _banded(url, None, grids, 3, 2, bands, order_seed=bands + 1)  # new reducers resume at step 1
    latent, step = LatentStore(url).read_latent()
    assert step == 3
    np.testing.assert_array_equal(latent, want)


def _euler():
    """SDXL's scheduler: Euler with epsilon prediction, its model input scaled per step."""
    from diffusers import EulerDiscreteScheduler

    from gigacanvas.actors.models.sdxl.tiny import SDXL_SCHEDULER

    return EulerDiscreteScheduler(**SDXL_SCHEDULER)


def _ddim():
    """DDIM from SDXL's config (`--scheduler DDIMScheduler`): no step index, no `set_begin_index`."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(_euler().config)


@pytest.mark.parametrize("bands", [1, 3])
@pytest.mark.parametrize("make", [_euler, _ddim], ids=["euler", "ddim"])
def test_a_non_flow_samplers_scaled_input_steps_the_whole_latent_and_resumes_exactly(tmp_path, bands, make):
    """Euler's windows are `scale_model_input`'s (1 / sqrt(sigma^2 + 1)) of the step the band
    holds, also after a resume, where the reducer's scheduler starts afresh at that step; DDIM
    steps from the timestep's value alone and resumes alike."""
    grids = StepGrids(40, 56, 16, 4)
    noise = initial_noise(3, CHANNELS, 40, 56) * np.float32(_scheduler(3, make).init_noise_sigma)
    want = _whole(noise, grids, 3, 2, make)
    url = str(tmp_path / "s.zarr")
    _banded(url, noise, grids, 3, 2, bands, order_seed=bands, make=make, until=1)  # stopped after step 1
    _banded(url, None, grids, 3, 2, bands, order_seed=bands + 1, make=make)  # new reducers resume at step 1
    np.testing.assert_array_equal(LatentStore(url).read_latent()[0], want)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(8, 64), width=st.integers(8, 48), tile=st.integers(8, 24), bands=st.integers(1, 5),
    batch=st.integers(1, 3), seed=st.integers(0, 99), shift=st.booleans(),
)
def test_any_band_split_of_any_canvas_is_the_whole_latent(tmp_path_factory, height, width, tile, bands, batch, seed, shift):
    grid = StepGrids(height, width, tile, tile // 4, seed=seed if shift else None)
    noise = initial_noise(seed, CHANNELS, height, width)
    url = str(tmp_path_factory.mktemp("h") / "s.zarr")
    _banded(url, noise, grid, 2, batch, bands, order_seed=seed)
    np.testing.assert_array_equal(LatentStore(url).read_latent()[0], _whole(noise, grid, 2, batch))


def test_a_band_blender_folds_whole_tiles_or_their_rows_alike():
    grid = plan_tiles(30, 30, 12, 3)
    rng = np.random.default_rng(0)
    preds = [rng.standard_normal((2, 12, 12)).astype(np.float32) for _ in grid.windows]
    whole = TileBlender(grid, 2)
    band = TileBlender(grid, 2, rows=(9, 21))
    for i, pred in enumerate(preds):
        whole.add(i, pred)
        if i in band.tiles:
            band.add(i, pred)
    np.testing.assert_array_equal(band.result(), whole.result()[:, 9:21])
    with pytest.raises(ValueError, match="does not reach"):
        TileBlender(grid, 2, rows=(0, 3)).add(len(grid) - 1, preds[-1])


TORUS = StepGrids(48, 64, 16, 4, seed=9, wrap_y=True, wrap_x=True)


@pytest.mark.parametrize("bands", [1, 2, 3])
def test_on_a_torus_a_band_split_steps_the_latent_bit_for_bit(tmp_path, bands):
    """Tiles cross the joined edges (rows from the first and the last band, columns modulo the
    width) and every band split is still the whole latent's step: the actor count cannot show."""
    assert any(w.y + w.h > 48 for w in TORUS.grid(0).windows) and any(w.x + w.w > 64 for w in TORUS.grid(1).windows)
    noise = initial_noise(3, CHANNELS, 48, 64)
    store = _banded(str(tmp_path / "s.zarr"), noise, TORUS, 3, 2, bands, order_seed=bands)
    latent, step = LatentStore(store.url).read_latent()
    assert step == 3
    np.testing.assert_array_equal(latent, _whole(noise, TORUS, 3, 2))


@pytest.mark.parametrize("overlap", [0, 4])
def test_a_torus_render_rolled_is_the_render_of_the_rolled_noise(tmp_path, overlap):
    """What pins the torus down: rolling the noise by a multiple of the grid's spacing rolls the
    render, shifted windows and all; a canvas with edges has no such symmetry (the last check)."""
    grids = StepGrids(48, 48, 16, overlap, seed=4, wrap_y=True, wrap_x=True)
    spacing = 48 // len(grids.grid(0).xs)  # 16 without overlap (3 tiles), 12 with 4 (4 tiles)
    noise = initial_noise(2, CHANNELS, 48, 48)
    rolled = np.roll(noise, (spacing, 2 * spacing), axis=(1, 2))
    one = _banded(str(tmp_path / "a.zarr"), noise, grids, 3, 2, 2).read_latent()[0]
    two = _banded(str(tmp_path / "b.zarr"), rolled, grids, 3, 2, 2).read_latent()[0]
    want = np.roll(one, (spacing, 2 * spacing), axis=(1, 2))
    if overlap == 0:  # one tile per pixel: the same sums, bit for bit
        np.testing.assert_array_equal(two, want)
    else:  # several tiles per pixel, folded in another order: float64 sums, equal to rounding
        np.testing.assert_allclose(two, want, rtol=0, atol=1e-6)
    flat = StepGrids(48, 48, 16, overlap, seed=4)
    edged = _whole(noise, flat, 3, 2)
    assert np.abs(_whole(rolled, flat, 3, 2) - np.roll(edged, (spacing, 2 * spacing), axis=(1, 2))).max() > 1e-2
