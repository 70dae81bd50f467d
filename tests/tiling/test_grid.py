import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling import plan_axis, plan_tiles
from gigacanvas.tiling.grid import Window, torus_axis, wrapped_pieces

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


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(2, 96), st.integers(0, 10_000), st.data())
def test_a_torus_axis_covers_the_circle_with_full_tiles_overlapping_across_the_edge(length, tile, phase, data):
    overlap = data.draw(st.integers(0, tile - 1))
    starts = torus_axis(length, tile, overlap, phase)
    size = min(tile, length)
    assert list(starts) == sorted(starts) and all(0 <= s < length for s in starts)
    seen = np.zeros(length, dtype=int)
    for s in starts:
        seen[np.arange(s, s + size) % length] += 1  # full size, wrapping past the end
    assert seen.min() >= 1
    if len(starts) > 1:
        gaps = np.diff([*starts, starts[0] + length])  # the last gap crosses the joined edge
        assert size - gaps.max() >= overlap and gaps.max() - gaps.min() <= 1
        assert len(starts) == -(-length // (tile - overlap))  # no extra tile: nothing to be flush with


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 39), st.integers(0, 39), st.data())
def test_wrapped_pieces_are_the_windows_pixels_modulo_the_canvas(height, width, y, x, data):
    h, w = data.draw(st.integers(1, height)), data.draw(st.integers(1, width))
    window = Window(y, x, h, w)
    canvas = np.arange(height * width).reshape(height, width)
    want = canvas[np.ix_(np.arange(y, y + h) % height, np.arange(x, x + w) % width)]
    got = np.full((h, w), -1)
    for piece, ty, tx in wrapped_pieces(window, height, width):
        assert 0 <= piece.y and piece.y + piece.h <= height and 0 <= piece.x and piece.x + piece.w <= width
        got[ty : ty + piece.h, tx : tx + piece.w] = canvas[piece.slices]
    np.testing.assert_array_equal(got, want)
