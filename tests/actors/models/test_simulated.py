"""The simulated model, without Ray: its shape, its determinism, and the sleep it stands in with."""

import pickle

import numpy as np
import pytest

from gigacanvas.actors.loading import load_adapter, open_model
from gigacanvas.actors.models import simulated
from gigacanvas.actors.models.simulated import (
    SimulatedAdapter,
    simulated_info,
    simulated_model,
)
from gigacanvas.errors import UsageError


@pytest.fixture
def sleeps(monkeypatch):
    """The seconds each `time.sleep` of the simulated model was asked for (nothing really sleeps)."""
    asked = []
    monkeypatch.setattr(simulated.time, "sleep", asked.append)
    return asked


def _tiles(batch=2, size=16, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 16, size, size)).astype(np.float32)


def test_info_has_sd35s_shape_and_a_fingerprint_of_its_timings():
    info = open_model(simulated_model(0.2))  # the --model hook in open_model
    assert info == simulated_info("simulated:0.2")
    assert (info.family, info.latent_channels, info.vae_scale_factor, info.patch_size) == ("simulated", 16, 8, 2)
    assert info.native_tile_px == 1024 and info.align_px == 16
    assert dict(info.options) == {"tile_seconds": 0.2, "slow": 1.0}
    others = {simulated_info(m).fingerprint for m in ("simulated:0.2", "simulated:0.3", "simulated:0.2,slow=2")}
    assert len(others) == 3
    assert simulated_model(0.2, 2.0) == "simulated:0.2,slow=2.0"
    assert isinstance(load_adapter(info, "cpu"), SimulatedAdapter)


@pytest.mark.parametrize(
    "model", ["simulated:", "simulated:abc", "simulated:-1", "simulated:nan", "simulated:inf", "simulated:0.1,fast=2",
              "simulated:0.1,slow=0.5", "simulated:0.1,slow"],
)
def test_bad_spellings_are_one_line_usage_errors(model):
    with pytest.raises(UsageError) as err:
        open_model(model)
    assert "\n" not in str(err.value)


def test_a_base_model_is_refused():
    with pytest.raises(UsageError, match="base-model"):
        open_model("simulated:0.1", "some/folder")


def test_predict_is_deterministic_float32_and_depends_on_input_and_timestep(sleeps):
    adapter = SimulatedAdapter(simulated_info("simulated:0.1"))
    cond = adapter.encode_prompt("a harbour", "", 7.0)
    tiles = _tiles()
    out = adapter.predict(tiles, 500.0, cond, 7.0)
    assert out.shape == tiles.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, adapter.predict(tiles.copy(), 500.0, cond, 7.0))
    assert not np.array_equal(out, adapter.predict(tiles, 400.0, cond, 7.0))
    assert not np.array_equal(out, adapter.predict(_tiles(seed=1), 500.0, cond, 7.0))


def test_predict_sleeps_its_seconds_per_tile_of_the_batch(sleeps):
    adapter = SimulatedAdapter(simulated_info("simulated:0.25"))
    cond = adapter.encode_prompt("p", "n", 4.0)
    for batch in (1, 3):
        adapter.predict(_tiles(batch), 900.0, cond, 4.0)
    assert sleeps == pytest.approx([0.25, 0.75])


def test_the_slow_worker_sleeps_its_factor_longer(sleeps):
    adapter = SimulatedAdapter(simulated_info("simulated:0.25,slow=4"))
    adapter.preload()  # outside Ray an adapter is worker number 0, the slow one
    adapter.predict(_tiles(2), 900.0, adapter.encode_prompt("p", "", 1.0), 1.0)
    assert sleeps == pytest.approx([2.0])


def test_decode_upsamples_to_pixels_in_range():
    adapter = SimulatedAdapter(simulated_info("simulated:0"))
    latents = _tiles(2, size=8) * 10
    pixels = adapter.decode(latents)
    assert pixels.shape == (2, 3, 64, 64) and pixels.dtype == np.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    np.testing.assert_array_equal(pixels, adapter.decode(latents))


def test_scheduler_is_sd3s_flow_matching_euler_with_the_steps_set():
    scheduler = SimulatedAdapter(simulated_info("simulated:0")).make_scheduler(28, 128, 128)
    assert type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert scheduler.config.shift == 3.0 and len(scheduler.timesteps) == 28


def test_conditioning_is_tiny_picklable_and_follows_the_prompts():
    adapter = SimulatedAdapter(simulated_info("simulated:0"))
    cond = adapter.encode_prompt("a harbour" * 1000, "blurry", 7.0)
    assert len(pickle.dumps(cond)) < 300
    assert pickle.loads(pickle.dumps(cond)) == cond
    assert cond != adapter.encode_prompt("a harbour", "blurry", 7.0)
