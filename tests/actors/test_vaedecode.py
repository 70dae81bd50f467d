"""The seamless decode's stages on the tiny model's VAE, without Ray: tiles with shared GroupNorm
statistics give the whole decode's pixels."""

import dataclasses

import numpy as np
import pytest
import torch

from gigacanvas.actors.vaedecode import SeamlessVae, decode_in_tiles, to_uint8
from gigacanvas.tiling.decodepasses import CHECKPOINT_BUDGET, plan_passes
from gigacanvas.tiling.decodetiles import paste, plan_decode_tiles
from gigacanvas.tiling.grid import Window


@pytest.fixture(scope="module")
def vae(tiny_model):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(tiny_model, subfolder="vae").eval()


def _whole(vae, latent):
    with torch.inference_mode():
        z = torch.from_numpy(latent)[None] / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(z, return_dict=False)[0][0].numpy()


def _tiled(stages, latent, core, side=None, budget=CHECKPOINT_BUDGET, wrap=(False, False), sample_core=32):
    return decode_in_tiles(stages, latent, core, side, budget, wrap, sample_core)


def test_exact_tiles_equal_the_whole_decode(vae):
    stages = SeamlessVae(vae, "cpu", torch.float32)
    assert stages.halo == 9 and stages.norm_count == 17  # the tiny tail: 4 up-blocks of 2 resnets, norm_out
    latent = np.random.default_rng(3).standard_normal((16, 16, 24)).astype(np.float32)
    whole = _whole(vae, latent)
    # 2 x 3 tiles whose halos reach past the canvas's middle; with a checkpoint after every
    # up-block (the default here), and with none (every pass from the mid-block's output)
    assert {p.start for p in plan_passes(stages.layout, 16, 24, CHECKPOINT_BUDGET)} == {0, 1, 2, 3}
    assert {p.start for p in plan_passes(stages.layout, 16, 24, 0)} == {0}
    for budget in (CHECKPOINT_BUDGET, 0):
        ours = _tiled(stages, latent, 8, budget=budget)
        assert not np.isnan(ours).any()  # every pixel written, by cores that never overlap
        err = np.abs(to_uint8(ours).astype(int) - to_uint8(whole).astype(int))
        assert err.max() <= 1 and err.mean() <= 0.05 / 255 * 255  # the bound: mean <= 0.05 of 255
        assert np.abs(ours - whole).max() < 1e-4


def test_without_the_halo_the_tiles_would_differ(vae):
    # the test can fail: a halo one latent pixel short of the radius shows at the cores' edges
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(4).standard_normal((16, 32, 32)).astype(np.float32)
    whole = _whole(vae, latent)
    # the fast mode with a sample as large as the canvas: the whole canvas's statistics, few passes
    assert np.abs(_tiled(stages, latent, 16, side=32) - whole).max() < 1e-4
    layout = stages.layout
    stages.layout = dataclasses.replace(layout, reach=(layout.reach[0] - 2, *layout.reach[1:]))
    short = _tiled(stages, latent, 16, side=32)
    assert np.abs(short - whole).max() > 1e-3


def test_a_checkpoint_read_with_a_short_halo_would_differ(vae):
    # the checkpoints' windows have the halo of what is left to run: one latent pixel short of
    # the second up-block's reach shows, so the planner's halos are not idle
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(8).standard_normal((16, 32, 32)).astype(np.float32)
    whole = _whole(vae, latent)
    layout = stages.layout
    stages.layout = dataclasses.replace(layout, reach=(layout.reach[0], layout.reach[1] - 1, *layout.reach[2:]))
    assert np.abs(_tiled(stages, latent, 16) - whole).max() > 1e-3


def test_crops_that_cover_the_canvas_pool_to_the_whole_decodes_statistics(vae):
    """The pooling behind the fast mode: crops whose cores partition a torus, each with the halo
    of the whole tail, gather every GroupNorm's statistics exactly as one whole circular decode
    does (every scale's core cut right, merged over the batch); crops of half the canvas don't."""
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(5).standard_normal((16, 16, 24)).astype(np.float32)
    head = stages.head(latent, (True, True))
    whole = stages.sample(head[None], [[(Window(0, 0, 16, 24), 1.0)]], 0, [], (True, True))
    assert len(whole) == stages.norm_count and all(s.shape == (n.num_groups, 3) for s, n in zip(whole, stages.norms))
    tiles = plan_decode_tiles(16, 24, 8, stages.halo, True, True)
    windows = np.stack([paste(t.window, [(Window(0, 0, 16, 24), head)], 1, 16, 24) for t in tiles])
    cores = [[(t.core_in_window, 1.0)] for t in tiles]
    pooled = stages.sample(windows, cores, 0, [], (False, False))
    for ours, theirs in zip(pooled, whole, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    half = stages.sample(windows[::2], cores[::2], 0, [], (False, False))
    # doubled, the half stands for as many pixels and estimates the same: only the sums scale
    doubled = stages.sample(windows[::2], [[(c, 2.0)] for (c, _), in cores[::2]], 0, [], (False, False))
    for a, b in zip(half, doubled, strict=True):
        np.testing.assert_allclose(b[:, 0], 2 * a[:, 0])
        np.testing.assert_allclose(b[:, 1], a[:, 1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b[:, 2] / b[:, 0], a[:, 2] / a[:, 0], rtol=1e-5, atol=1e-7)
    assert max(np.abs(a[:, 2] / a[:, 0] - b[:, 2] / b[:, 0]).max() for a, b in zip(half[1:], whole[1:])) > 1e-3
    # statistics given are used, not gathered: only the ones past them come back
    rest = stages.sample(windows, cores, 0, whole[:5], (False, False))
    for ours, theirs in zip(rest, whole[5:], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_fast_mode_estimates_the_statistics_from_crops(vae):
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(5).standard_normal((16, 48, 48)).astype(np.float32)
    whole = _whole(vae, latent)

    def err(pixels):
        assert not np.isnan(pixels).any()
        return np.abs(to_uint8(pixels).astype(int) - to_uint8(whole).astype(int)).mean()

    # crops as large as the canvas are the whole decode's statistics: exact again
    assert np.abs(_tiled(stages, latent, 16, side=48) - whole).max() < 1e-4
    # 3 x 3 crops, cores of 8 (windows of 16, as much window as canvas on a canvas this small):
    # near, not equal (the tiny VAE's 2-channel groups make a noisy estimate; SD3.5's figures are
    # in docs/benchmarks.md)
    assert 0 < err(_tiled(stages, latent, 16, side=24, sample_core=8)) < 3


def test_a_tile_that_is_the_canvas_uses_its_own_statistics(vae):
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(7).standard_normal((16, 16, 24)).astype(np.float32)
    (tile,) = plan_decode_tiles(16, 24, 0, stages.halo)
    own = stages.tail(stages.head(latent), tile.core_in_window, None)
    assert np.abs(own - _whole(vae, latent)).max() < 1e-4
    part = plan_decode_tiles(16, 24, 8, stages.halo)[0]
    with pytest.raises(ValueError, match="only a tile that is the whole canvas"):
        stages.tail(stages.head(latent)[(slice(None), *part.window.slices)], part.core_in_window, None)


def test_probe_needs_the_statistics_before_it(vae):
    stages = SeamlessVae(vae, "cpu", torch.float32)
    head = stages.head(np.zeros((16, 8, 8), np.float32))
    tile = plan_decode_tiles(8, 8, 0, stages.halo)[0]
    with pytest.raises(ValueError, match="needs statistics for 3"):
        stages.tail(head, tile.core_in_window, [], 3)
    with pytest.raises(ValueError, match="needs statistics for 17"):
        stages.tail(head, tile.core_in_window, [])
    # and the swapped norms are put back: the VAE decodes as before afterwards
    assert all("forward" not in vars(n) for n in stages.norms)


def test_a_vae_with_attention_past_the_mid_block_is_refused():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        up_block_types=("AttnUpDecoderBlock2D",), down_block_types=("DownEncoderBlock2D",),
        block_out_channels=(8,), norm_num_groups=4, latent_channels=4,
    )
    with pytest.raises(ValueError, match="attention past its mid-block"):
        SeamlessVae(vae, "cpu", torch.float32)


def test_windowed_attention_is_the_global_one_when_one_window_covers_the_latent(vae, monkeypatch):
    from gigacanvas.actors import vaedecode

    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(6).standard_normal((16, 12, 20)).astype(np.float32)
    exact = stages.head(latent)
    monkeypatch.setattr(vaedecode, "EXACT_ATTENTION_PIXELS", 0)  # every latent is "large" now
    monkeypatch.setattr(vaedecode, "ATTENTION_WINDOW", 32)
    np.testing.assert_allclose(stages.head(latent), exact, atol=1e-5)
    monkeypatch.setattr(vaedecode, "ATTENTION_WINDOW", 6)  # 2 x 4 windows: now it attends locally
    windowed = stages.head(latent)
    assert np.abs(windowed - exact).max() > 1e-4
    # and the mid-block's own processor is back afterwards
    from diffusers.models.attention_processor import Attention

    assert not any(isinstance(m.processor, vaedecode.WindowedAttention) for m in vae.decoder.mid_block.modules() if isinstance(m, Attention))


@pytest.mark.parametrize("wrap", [(False, True), (True, True)], ids=["x", "xy"])
def test_on_a_torus_the_tiles_equal_the_whole_circular_decode_and_rolling_commutes(vae, wrap):
    """The wrapped decode pins the torus down: rolling the latent by k rolls the pixels by 8k (no
    edge anywhere along a wrapped axis), and tiles whose halos cross the joined edges give the
    one-piece circular decode's pixels, exact and fast alike."""
    stages = SeamlessVae(vae, "cpu", torch.float32)
    latent = np.random.default_rng(6).standard_normal((16, 16, 24)).astype(np.float32)
    whole = _tiled(stages, latent, 0, wrap=wrap)
    shift = (5 if wrap[0] else 0, 7)
    rolled = _tiled(stages, np.roll(latent, shift, axis=(1, 2)), 0, wrap=wrap)
    np.testing.assert_allclose(rolled, np.roll(whole, (shift[0] * 8, shift[1] * 8), axis=(1, 2)), rtol=0, atol=1e-4)
    plain = _whole(vae, latent)
    assert np.abs(whole[:, :, :8] - plain[:, :, :8]).max() > 1e-2  # the edge columns do change
    for side in (None, 32):
        tiled = _tiled(stages, latent, 8, side=side, wrap=wrap)
        assert not np.isnan(tiled).any()
        assert np.abs(tiled - whole).max() < 1e-4
