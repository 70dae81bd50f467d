import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling import TileBlender, plan_tiles
from gigacanvas.tiling.shift import StepGrids, shift_phase, shifted_axis, shifted_tiles

axes = st.integers(1, 600).flatmap(
    lambda length: st.integers(2, 200).flatmap(
        lambda tile: st.tuples(st.just(length), st.just(tile), st.integers(0, tile - 1))
    )
)
seeds = st.integers(0, 2**63 - 1)


@given(axes, seeds, st.integers(0, 10_000))
def test_a_shifted_axis_is_flush_covered_and_overlapping(args, seed, step):
    length, tile, overlap = args
    phase = shift_phase(seed, step, 1, tile - overlap)
    starts = shifted_axis(length, tile, overlap, phase)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length  # flush with both edges
    strides = np.diff(starts)
    assert all(s > 0 for s in strides)
    if len(strides):
        assert size - strides.max() >= overlap  # neighbours overlap by at least the overlap asked for
        assert len(starts) <= len(range(0, length - tile, tile - overlap)) + 2  # at most one tile more than a fixed grid's stride


@given(st.integers(1, 200), st.integers(1, 200), st.integers(2, 64), seeds, st.integers(0, 500), st.data())
def test_every_latent_pixel_is_covered_at_every_step_and_weights_sum_positive(height, width, tile, seed, step, data):
    overlap = data.draw(st.integers(0, tile - 1))
    grid = shifted_tiles(height, width, tile, overlap, seed, step)
    seen = np.zeros((height, width), dtype=int)
    for window in grid.windows:
        assert window.h == grid.tile_h and window.w == grid.tile_w  # full-size tiles: batches stack
        assert window.y >= 0 and window.x >= 0 and window.y + window.h <= height and window.x + window.w <= width
        seen[window.slices] += 1
    assert seen.min() >= 1
    assert (1.0 / TileBlender(grid, 1)._inv_weight_sum).min() > 0  # the blend divides by a positive sum


@given(st.integers(1, 300), seeds, st.integers(0, 1))
def test_phases_are_deterministic_and_take_every_value_before_repeating(stride, seed, axis):
    phases = [shift_phase(seed, step, axis, stride) for step in range(stride)]
    assert phases == [shift_phase(seed, step, axis, stride) for step in range(stride)]
    assert sorted(phases) == list(range(stride))  # borders never sit in the same place twice in `stride` steps
    assert shift_phase(seed, stride, axis, stride) == phases[0]


def test_phases_differ_by_seed_and_axis_and_jump_far():
    assert [shift_phase(1, s, 1, 120) for s in range(8)] != [shift_phase(2, s, 1, 120) for s in range(8)]
    assert [shift_phase(1, s, 0, 120) for s in range(8)] != [shift_phase(1, s, 1, 120) for s in range(8)]
    jumps = [abs(shift_phase(1, s + 1, 1, 120) - shift_phase(1, s, 1, 120)) for s in range(28)]
    assert min(min(j, 120 - j) for j in jumps) >= 120 // 5  # consecutive steps land far apart


def test_interior_borders_move_every_step():
    grids = StepGrids(128, 128, 32, 0, seed=7)
    borders = [set(grids.grid(s).xs[1:-1]) for s in range(28)]
    for a in range(28):
        for b in range(a + 1, 28):
            assert not borders[a] & borders[b]


def test_fixed_step_grids_are_the_planned_grid_and_a_small_canvas_never_shifts():
    fixed = StepGrids(40, 56, 16, 4)
    assert not fixed.shifted and all(fixed.grid(s) == plan_tiles(40, 56, 16, 4) for s in range(5))
    assert fixed.tokens(0) == len(fixed.grid(0)) * 16 * 16 / (40 * 56)
    small = StepGrids(24, 32, 32, 8, seed=3)
    assert all(small.grid(s) == plan_tiles(24, 32, 32, 8) for s in range(5))


def test_shifted_grids_vary_and_are_pure_functions_of_seed_and_step():
    grids = StepGrids(100, 140, 32, 8, seed=11)
    assert len({grids.grid(s) for s in range(10)}) == 10
    assert StepGrids(100, 140, 32, 8, seed=11).grid(4) == grids.grid(4)
    assert StepGrids(100, 140, 32, 8, seed=12).grid(4) != grids.grid(4)


@pytest.mark.parametrize("bad", [{"phase": -1}, {"phase": 24}, {"overlap": 32}])
def test_shifted_axis_refuses_a_phase_outside_the_stride(bad):
    args = {"length": 100, "tile": 32, "overlap": 8, "phase": 0} | bad
    with pytest.raises(ValueError):
        shifted_axis(**args)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 120), st.integers(1, 120), st.integers(2, 48), seeds, st.integers(0, 500), st.data())
def test_a_shifted_torus_grid_covers_every_pixel_with_full_tiles_and_a_positive_weight_sum(height, width, tile, seed, step, data):
    overlap = data.draw(st.integers(0, tile - 1))
    wrap_y, wrap_x = data.draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    grid = shifted_tiles(height, width, tile, overlap, seed, step, wrap_y, wrap_x)
    seen = np.zeros((height, width), dtype=int)
    for window in grid.windows:
        assert window.h == min(tile, height) and window.w == min(tile, width)  # never clipped
        assert (window.y + window.h <= height or wrap_y) and (window.x + window.w <= width or wrap_x)
        seen[np.ix_(np.arange(window.y, window.y + window.h) % height, np.arange(window.x, window.x + window.w) % width)] += 1
    assert seen.min() >= 1
    blender = TileBlender(grid, 1)
    assert (1.0 / blender._inv_weight_sum).min() > 0  # the blend divides by a positive sum
    for index, window in enumerate(grid.windows):  # a constant prediction blends to that constant
        blender.add(index, np.full((1, window.h, window.w), 2.5, np.float32))
    np.testing.assert_allclose(blender.result(), 2.5, rtol=1e-6)


def test_a_torus_grid_moves_freely_and_costs_no_extra_tile():
    grids = StepGrids(96, 64, 32, 0, seed=7, wrap_y=True, wrap_x=True)
    assert {grids.tokens(s) for s in range(20)} == {1.0}  # a partition at every step: 1.00x the canvas
    assert len({grids.grid(s).xs for s in range(20)}) > 10  # and it shifts every step
    flat = StepGrids(96, 64, 32, 0, seed=7)
    assert max(flat.tokens(s) for s in range(20)) > 1.0  # flush edge tiles cost one more per axis
    short = StepGrids(16, 64, 32, 0, seed=7, wrap_y=True)  # an axis no longer than a tile: rolled
    assert {g.ys for g in map(short.grid, range(16))} == {(p,) for p in range(16)}
