import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gigacanvas.tiling import plan_axis, plan_tiles

axes = st.integers(1, 600).flatmap(
    lambda length: st.integers(2, 200).flatmap(
        lambda tile: st.tuples(st.just(length), st.just(tile), st.integers(0, tile - 1))
    )
)


@given(axes)
def test_axis_is_flush_even_and_overlapping(args):
    length, tile, overlap = args
    starts = plan_axis(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0
    assert starts[-1] + size == length  # flush with the far edge: nothing left uncovered
    strides = np.diff(starts)
    assert all(s > 0 for s in strides)
    if len(strides):
        assert strides.max() - strides.min() <= 1  # even
        assert size - strides.max() >= overlap  # at least the overlap asked for


@given(axes)
def test_axis_uses_fewest_tiles(args):
    length, tile, overlap = args
    starts = plan_axis(length, tile, overlap)
    if len(starts) > 2:
        # one tile fewer could not cover the span with the required overlap
        assert (length - tile) / (len(starts) - 2) > tile - overlap


@given(st.integers(1, 300), st.integers(1, 300), st.integers(2, 96), st.data())
def test_grid_covers_every_pixel(height, width, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    grid = plan_tiles(height, width, tile, overlap)
    seen = np.zeros((height, width), dtype=int)
    for window in grid.windows:
        assert window.h == grid.tile_h and window.w == grid.tile_w
        assert window.y + window.h <= height and window.x + window.w <= width
        seen[window.slices] += 1
    assert seen.min() >= 1


def test_canvas_smaller_than_tile_is_one_tile_of_the_canvas():
    grid = plan_tiles(24, 32, 128, 16)
    assert len(grid) == 1 and grid.windows[0] == (0, 0, 24, 32)


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 9))
def test_batches_are_fixed_consecutive_and_complete(rows, cols, size):
    grid = plan_tiles(rows * 8, cols * 8, 16, 4)
    batches = grid.batches(size)
    assert [i for b in batches for i in b] == list(range(len(grid)))
    assert all(len(b) == size for b in batches[:-1])


def test_bad_plans_are_refused():
    with pytest.raises(ValueError):
        plan_axis(100, 32, 32)
    with pytest.raises(ValueError):
        plan_tiles(64, 64, 32, 8).batches(0)
