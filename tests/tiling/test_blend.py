import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling import TileBlender, plan_tiles


def _grid(data):
    tile = data.draw(st.integers(2, 24))
    return plan_tiles(
        data.draw(st.integers(1, 80)), data.draw(st.integers(1, 80)), tile, data.draw(st.integers(0, tile - 1))
    )


@given(st.data())
@settings(max_examples=60)
def test_normalised_weights_sum_to_one(data):
    grid = _grid(data)
    blender = TileBlender(grid, channels=1)
    for i, _ in enumerate(grid.windows):
        blender.add(i, np.ones((1, grid.tile_h, grid.tile_w), dtype=np.float32))
    # blending ones gives ones exactly where the normalised weights sum to one
    np.testing.assert_allclose(blender.result(), 1.0, rtol=1e-6)


@given(st.data())
@settings(max_examples=40)
def test_blend_of_a_consistent_field_is_the_field(data):
    grid = _grid(data)
    field = np.random.default_rng(0).standard_normal((2, grid.height, grid.width)).astype(np.float32)
    blender = TileBlender(grid, channels=2)
    for i, window in enumerate(grid.windows):
        blender.add(i, field[(slice(None), *window.slices)])
    np.testing.assert_allclose(blender.result(), field, rtol=1e-5, atol=1e-6)


@given(st.data())
@settings(max_examples=40)
def test_arrival_order_does_not_change_a_bit(data):
    grid = _grid(data)
    rng = np.random.default_rng(1)
    preds = [rng.standard_normal((3, grid.tile_h, grid.tile_w)).astype(np.float32) for _ in grid.windows]
    order = data.draw(st.permutations(range(len(preds))))
    first, second = TileBlender(grid, 3), TileBlender(grid, 3)
    for i, p in enumerate(preds):
        first.add(i, p)
    for i in order:
        second.add(i, preds[i])
    np.testing.assert_array_equal(first.result(), second.result())


def test_pixel_space_scale_and_reset():
    grid = plan_tiles(8, 12, 8, 4)
    blender = TileBlender(grid, channels=3, scale=4)
    for i in range(len(grid)):
        blender.add(i, np.full((3, 32, 32), 0.5, dtype=np.float32))
    assert blender.result().shape == (3, 32, 48)
    blender.reset()
    assert not blender.complete
    with pytest.raises(ValueError, match="incomplete"):
        blender.result()


def test_duplicate_tile_is_refused():
    grid = plan_tiles(16, 16, 8, 2)
    blender = TileBlender(grid, 1)
    blender.add(0, np.zeros((1, 8, 8)))
    with pytest.raises(ValueError):
        blender.add(0, np.zeros((1, 8, 8)))
