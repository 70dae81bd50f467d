"""A tile batch with regional prompts: one model call per prompt, on the tiles it touches, blended
by the masks; a tile of one prompt gets that prompt's prediction bit for bit."""

import numpy as np
import pytest

from gigacanvas.actors.regional import RegionalConditioning, predict_regional
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.regions import layout

# A 640 x 320 px canvas (80 x 40 latent) with the sky over its top half, feather 64 px.
SKY, _ = layout(((0, 0, 640, 160, "sky"),), "base", 640, 320, 8, 64)
WINDOWS = [Window(0, 0, 16, 16), Window(24, 40, 16, 16), Window(12, 20, 16, 16)]  # sky, base, both


def _tiles(n: int = 3) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, 4, 16, 16)).astype(np.float32)


def test_each_prompt_predicts_the_tiles_it_touches_once():
    calls = []

    def predict(tiles, cond):
        calls.append((cond, len(tiles)))
        return tiles * cond

    tiles = _tiles()
    out = predict_regional(predict, tiles, WINDOWS, SKY, RegionalConditioning((2.0, -3.0)))
    assert calls == [(2.0, 2), (-3.0, 2)]  # the base for tiles 1 and 2, the sky for 0 and 2
    np.testing.assert_array_equal(out[0], tiles[0] * -3.0)  # one prompt: its prediction, bit for bit
    np.testing.assert_array_equal(out[1], tiles[1] * 2.0)
    weights = SKY.weights(WINDOWS[2])
    np.testing.assert_allclose(out[2], (weights[0] * 2.0 + weights[1] * -3.0) * tiles[2], rtol=1e-6)
    assert out.dtype == np.float32


def test_prompts_that_agree_give_their_prediction_unchanged():
    """The masks are normalised: where every prompt predicts the same, the blend is that prediction."""
    tiles = _tiles()
    out = predict_regional(lambda t, cond: t * 1.5, tiles, WINDOWS, SKY, RegionalConditioning(("a", "b")))
    np.testing.assert_allclose(out, tiles * 1.5, rtol=1e-6, atol=0)


def test_a_tile_is_predicted_alike_in_any_batch():
    """Worker-side, a tile's result depends on its window and the plan's batch, nothing else."""
    tiles = _tiles()
    whole = predict_regional(lambda t, c: t + c, tiles, WINDOWS, SKY, RegionalConditioning((1.0, 2.0)))
    alone = [predict_regional(lambda t, c: t + c, tiles[i : i + 1], WINDOWS[i : i + 1], SKY, RegionalConditioning((1.0, 2.0))) for i in range(3)]
    np.testing.assert_array_equal(whole, np.concatenate(alone))


def test_mismatched_conditioning_is_refused():
    with pytest.raises(ValueError, match="3 tiles with 3 windows, 1 prompts for 2"):
        predict_regional(lambda t, c: t, _tiles(), WINDOWS, SKY, RegionalConditioning(("a",)))
