"""The seamless decode's plan: cores partition the canvas; windows are cores plus the halo."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gigacanvas.tiling.decodepasses import DecodePass, TailLayout, plan_fast, plan_passes
from gigacanvas.tiling.decodetiles import SampleCrop, crop_padding, overlapping, paste, plan_decode_tiles, sample_crops
from gigacanvas.tiling.grid import Window


@given(
    height=st.integers(1, 200), width=st.integers(1, 200), core=st.integers(0, 80), halo=st.integers(0, 30)
)
def test_cores_cover_every_pixel_once_and_windows_add_the_halo_inside_the_canvas(height, width, core, halo):
    tiles = plan_decode_tiles(height, width, core, halo)
    owner = np.zeros((height, width), int)
    for tile in tiles:
        c, w = tile.core, tile.window
        owner[c.y : c.y + c.h, c.x : c.x + c.w] += 1
        assert 0 <= w.y <= c.y and 0 <= w.x <= c.x
        assert c.y - w.y == min(halo, c.y) and c.x - w.x == min(halo, c.x)
        assert w.y + w.h == min(height, c.y + c.h + halo) and w.x + w.w == min(width, c.x + c.w + halo)
        inner = tile.core_in_window
        assert (inner.y + w.y, inner.x + w.x, inner.h, inner.w) == tuple(c)
        if core:
            assert c.h <= core and c.w <= core
    assert (owner == 1).all()
    # row-major: the order statistics are merged in
    assert [t.core[:2] for t in tiles] == sorted(t.core[:2] for t in tiles)


def test_core_zero_is_the_whole_canvas_with_nothing_to_read_around_it():
    (tile,) = plan_decode_tiles(24, 40, 0, 9)
    assert tuple(tile.core) == tuple(tile.window) == (0, 0, 24, 40)


SD35 = TailLayout(  # SD3.5's VAE as SeamlessVae traces it: 4 up-blocks of 3 resnets, norm_out
    norm_segments=(0,) * 6 + (1,) * 6 + (2,) * 6 + (3,) * 7,
    reach=(6.5, 3.25, 1.625, 0.875),
    channels=(512, 512, 512, 256),
    scales=(1, 2, 4, 8),
)


def test_halos_shrink_with_what_is_left_to_run():
    assert SD35.halo(0, 3) == 13 and SD35.halo(3, 3) == 1 and SD35.halo(1, 2) == 5
    assert SD35.checkpoint_bytes(3, 256, 256) == 4 << 30  # 2048 px: the last checkpoint is 4 GiB


@given(budget_gib=st.sampled_from([0, 1, 2, 4, 8, 1 << 20]), side=st.sampled_from([64, 128, 256, 1024, 2048]))
def test_passes_probe_every_groupnorm_in_order_from_a_checkpoint_taken_before(budget_gib, side):
    passes = plan_passes(SD35, side, side, budget_gib << 30)
    probes = [p.probe for p in passes if p.probe is not None]
    assert probes == list(range(len(SD35.norm_segments)))
    taken = {0}
    for p in passes:
        assert p.start in taken and p.start <= p.end  # a pass reads a boundary some pass produced
        if p.probe is not None:
            assert SD35.norm_segments[p.probe] == p.end  # the norm runs in the last segment read
        elif p.end < SD35.segments - 1:
            taken.add(p.end + 1)
            assert SD35.checkpoint_bytes(p.end + 1, side, side) <= budget_gib << 30
    assert passes[-1] == DecodePass(max(taken), SD35.segments - 1)  # the pixels, from the latest
    # one extra pass per checkpoint, never more
    assert len(passes) == len(SD35.norm_segments) + 1 + len(taken) - 1


@given(
    height=st.integers(1, 60), width=st.integers(1, 60), core=st.integers(1, 25), halo=st.integers(0, 12),
    scale=st.sampled_from([1, 2, 4]),
)
def test_a_window_pasted_from_the_cores_is_the_window_cut_from_the_canvas(height, width, core, halo, scale):
    # at most 15 x 15 tiles: 1-pixel cores of a 60 x 60 canvas (3600 tiles, each looking through
    # 3600 parts) took most of a minute for nothing a few hundred tiles don't show
    assume(-(-height // core) * -(-width // core) <= 225)
    rng = np.random.default_rng(height * 1000 + width)
    canvas = rng.standard_normal((2, height * scale, width * scale)).astype(np.float32)
    cores = [t.core for t in plan_decode_tiles(height, width, core, 0)]
    parts = [(c, canvas[:, c.y * scale : (c.y + c.h) * scale, c.x * scale : (c.x + c.w) * scale]) for c in cores]
    for tile in plan_decode_tiles(height, width, core, halo):
        w = tile.window
        reads = overlapping(cores, w)
        assert len(reads) <= 9 or halo > core  # a halo within a core reads at most the 8 neighbours
        got = paste(w, [parts[i] for i in reads], scale)
        np.testing.assert_array_equal(got, canvas[:, w.y * scale : (w.y + w.h) * scale, w.x * scale : (w.x + w.w) * scale])


def test_a_window_the_parts_do_not_cover_is_refused():
    part = (Window(0, 0, 4, 4), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="uncovered"):
        paste(Window(2, 2, 4, 4), [part], 1)


@settings(max_examples=40, deadline=None)
@given(
    # cores of 4 or more: 1-pixel cores of a 40 x 40 canvas are 1600 tiles pasting from 1600 parts,
    # minutes a run for nothing a few hundred tiles don't show
    height=st.integers(1, 40), width=st.integers(1, 40), core=st.integers(4, 25), halo=st.integers(0, 50),
    scale=st.sampled_from([1, 2]), wrap=st.sampled_from([(True, False), (False, True), (True, True)]),
)
def test_on_a_torus_a_window_takes_its_halo_across_the_joined_edge(height, width, core, halo, scale, wrap):
    rng = np.random.default_rng(height * 1000 + width)
    canvas = rng.standard_normal((2, height * scale, width * scale)).astype(np.float32)
    cores = [t.core for t in plan_decode_tiles(height, width, core, 0)]
    parts = [(c, canvas[:, c.y * scale : (c.y + c.h) * scale, c.x * scale : (c.x + c.w) * scale]) for c in cores]
    torus = (height if wrap[0] else None, width if wrap[1] else None)
    for tile in plan_decode_tiles(height, width, core, halo, *wrap):
        w, c = tile.window, tile.core_in_window
        if len(cores) > 1:  # the whole decode pads circularly itself; tiles carry the full halo
            assert (c.y == halo) == wrap[0] or tile.core.y >= halo
            assert (c.x == halo) == wrap[1] or tile.core.x >= halo
        ys = np.arange(w.y * scale, (w.y + w.h) * scale) % (height * scale) if wrap[0] else np.arange(w.y * scale, (w.y + w.h) * scale)
        xs = np.arange(w.x * scale, (w.x + w.w) * scale) % (width * scale) if wrap[1] else np.arange(w.x * scale, (w.x + w.w) * scale)
        reads = overlapping(cores, w, *torus)
        got = paste(w, [parts[i] for i in reads], scale, *torus)
        np.testing.assert_array_equal(got, canvas[:, ys[:, None], xs])


@given(
    height=st.integers(1, 300), width=st.integers(1, 300), core=st.integers(1, 64), halo=st.integers(0, 20),
    budget=st.integers(1, 40000), wrap=st.sampled_from([(False, False), (True, False), (False, True), (True, True)]),
)
def test_sample_crops_weigh_disjoint_exact_cores_to_the_canvas(height, width, core, halo, budget, wrap):
    crops = sample_crops(height, width, core, halo, budget, *wrap)
    if height * width <= budget:  # the canvas fits: one crop of itself, the exact statistics
        assert crops == (SampleCrop(Window(0, 0, height, width), ((Window(0, 0, height, width), 1.0),)),)
        return
    assert len({(c.window.h, c.window.w) for c in crops}) == 1  # one batch
    owner = np.zeros((height, width), int)
    weight = np.zeros((height, width))
    for c in crops:
        w = c.window
        for piece, share in c.pieces:
            assert share >= 1.0 - 1e-9
            # exact: the halo is inside the window on every side the canvas goes on past it
            for lo, size, w_lo, w_size, length, wrapped in (
                (piece.y, piece.h, w.y, w.h, height, wrap[0]), (piece.x, piece.w, w.x, w.w, width, wrap[1])
            ):
                assert 0 <= lo and lo + size <= w_size
                assert wrapped or (0 <= w_lo and w_lo + w_size <= length)
                assert lo >= halo or w_lo + lo == 0 or (wrapped and w_size == length)
                assert w_size - lo - size >= halo or w_lo + lo + size == length or (wrapped and w_size == length)
            ys = np.arange(w.y + piece.y, w.y + piece.y + piece.h) % height
            xs = np.arange(w.x + piece.x, w.x + piece.x + piece.w) % width
            owner[np.ix_(ys, xs)] += 1
            weight[np.ix_(ys, xs)] = share
    assert owner.max() == 1  # no pixel counted twice
    assert weight.sum() == pytest.approx(height * width)  # the weights stand for the whole canvas
    for axis, length, wrapped in ((0, height, wrap[0]), (1, width, wrap[1])):
        if not wrapped and crops[0].window[2 + axis] < length:  # both edges sampled where the canvas has them
            line = owner.any(axis=1 - axis)
            assert line[0] and line[-1]
    padding = crop_padding(crops, height, width, *wrap)
    assert padding == (wrap[0] and crops[0].window.h == height, wrap[1] and crops[0].window.w == width)


def test_sample_crops_fit_the_budget_and_spread_over_the_canvas():
    # SD3.5 at 2048 px from the first up-block's end: windows of 44, a 3 x 3 grid at the least
    crops = sample_crops(256, 256, 32, 6, 128 * 128)
    assert len(crops) == 9
    ys, xs = {c.window.y for c in crops}, {c.window.x for c in crops}
    assert ys == xs == {0, 106, 212}
    # a budget for more: more crops, within it
    more = sample_crops(256, 256, 32, 6, 256 * 160)
    assert len(more) > 9 and sum(c.window.h * c.window.w for c in more) <= 256 * 160


def test_fast_plan_samples_after_the_first_segment_from_its_checkpoint_if_it_fits():
    plan = plan_fast(SD35, 256, 256, 4 << 30)
    first = [k for k, s in enumerate(SD35.norm_segments) if s == 0]
    last = SD35.segments - 1
    assert plan == (*(DecodePass(0, 0, k) for k in first), DecodePass(0, 0), DecodePass(1, last, sample=True), DecodePass(1, last))
    # no room for the checkpoint: the crops and the pixels read the mid-block's output
    assert plan_fast(SD35, 256, 256, 0)[-2:] == (DecodePass(0, last, sample=True), DecodePass(0, last))
