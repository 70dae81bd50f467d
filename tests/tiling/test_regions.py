"""Regional prompts' weights: a partition of unity, soft edges symmetric and of the stated width,
and the prompts a tile predicts exactly those that weigh in it."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.regions import layout, ramp

SCALE = 8  # pixels per latent pixel
PROMPTS = ["base", "sky", "title", "sea"]


@st.composite
def canvases(draw):
    """(layout, prompts, window): up to 4 regions (prompts repeat, the base's too) on a canvas of
    up to 96 x 96 latent pixels, a plain or wrapped one, and a window on it (past the joined edge
    on a torus)."""
    lat_h, lat_w = draw(st.integers(4, 96)), draw(st.integers(4, 96))
    wrap_y, wrap_x = draw(st.booleans()), draw(st.booleans())
    regions = []
    for _ in range(draw(st.integers(0, 4))):
        x = draw(st.integers(0, lat_w * SCALE - 1))
        y = draw(st.integers(0, lat_h * SCALE - 1))
        w = draw(st.integers(1, lat_w * SCALE - x))
        h = draw(st.integers(1, lat_h * SCALE - y))
        regions.append((x, y, w, h, draw(st.sampled_from(PROMPTS))))
    feather = draw(st.sampled_from([0, 8, 24, 64, 256]))
    the_layout, prompts = layout(tuple(regions), "base", lat_w * SCALE, lat_h * SCALE, SCALE, feather, wrap_y, wrap_x)
    wy, wx = draw(st.integers(0, lat_h - 1)), draw(st.integers(0, lat_w - 1))
    h = draw(st.integers(1, lat_h if wrap_y else lat_h - wy))
    w = draw(st.integers(1, lat_w if wrap_x else lat_w - wx))
    return the_layout, prompts, Window(wy, wx, h, w)


@settings(max_examples=40)
@given(canvases())
def test_the_weights_are_a_partition_of_unity(case):
    the_layout, prompts, window = case
    weights = the_layout.weights(window)
    assert weights.shape == (len(prompts), window.h, window.w)
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-12)


@settings(max_examples=40)
@given(canvases(), st.data())
def test_a_window_touches_exactly_the_prompts_of_its_pixels(case, data):
    """The touch set is per-pixel truth (no tile skips a prompt that weighs in it, none predicts one
    that does not), a window's weights are those of any window inside it (so a tile's need no
    canvas), and a region's prompt weighs exactly within half a feather of its rectangle."""
    the_layout, _, window = case
    weights = the_layout.weights(window)
    touched = the_layout.touches(window)
    assert touched == tuple(p for p in range(the_layout.prompts) if weights[p].any())
    dy, dx = data.draw(st.integers(0, window.h - 1)), data.draw(st.integers(0, window.w - 1))
    h, w = data.draw(st.integers(1, window.h - dy)), data.draw(st.integers(1, window.w - dx))
    inner = the_layout.weights(Window(window.y + dy, window.x + dx, h, w))
    np.testing.assert_array_equal(inner, weights[:, dy : dy + h, dx : dx + w])
    half = the_layout.feather / 2
    for rect in the_layout.rects:
        if rect.prompt == 0 or the_layout.wrap_y or the_layout.wrap_x:
            continue  # the base is the complement; a torus's rectangles have copies
        ys = window.y + np.arange(window.h) + 0.5
        xs = window.x + np.arange(window.w) + 0.5
        lo_y = -np.inf if rect.y0 <= 0 else rect.y0
        hi_y = np.inf if rect.y1 >= the_layout.height else rect.y1
        lo_x = -np.inf if rect.x0 <= 0 else rect.x0
        hi_x = np.inf if rect.x1 >= the_layout.width else rect.x1
        if half:
            near = ((ys > lo_y - half) & (ys < hi_y + half)).any() and ((xs > lo_x - half) & (xs < hi_x + half)).any()
        else:
            near = ((ys >= lo_y) & (ys < hi_y)).any() and ((xs >= lo_x) & (xs < hi_x)).any()
        if near:
            assert rect.prompt in touched


@given(st.floats(0, 40), st.floats(0.5, 20))
def test_the_feather_is_symmetric_about_the_edge_and_as_wide_as_stated(d, half):
    pair = ramp(np.array([d, -d]), half)
    assert abs(pair[0] + pair[1] - 1.0) < 1e-12
    assert ramp(np.array([0.0]), half)[0] == 0.5
    if d >= half:
        assert pair[0] == 1.0 and pair[1] == 0.0
    else:
        assert 0.5 <= pair[0] < 1.0 and 0.0 < pair[1] <= 0.5


def test_a_region_draws_alone_inside_and_the_base_alone_far_from_it():
    """feather 64 px = 8 latent: the region's prompt alone from 4 latent pixels inside its edge,
    the base alone from 4 outside, a mix between; edges on the canvas's border are not feathered."""
    the_layout, prompts = layout(((0, 0, 320, 160, "sky"),), "base", 640, 320, SCALE, 64)
    assert prompts == ("base", "sky")
    weights = the_layout.weights(Window(0, 0, 40, 80))
    np.testing.assert_array_equal(weights[1, :16, :36], 1.0)  # up to the canvas's top and left edges
    np.testing.assert_array_equal(weights[0, 24:, :], 1.0)
    np.testing.assert_array_equal(weights[0, :, 44:], 1.0)
    assert 0 < weights[1, 19, 10] < 1 and weights[1, 19, 10] > weights[1, 20, 10]  # the edge at row 20
    assert the_layout.touches(Window(0, 0, 16, 16)) == (1,)
    assert the_layout.touches(Window(24, 44, 16, 16)) == (0,)
    assert the_layout.touches(Window(16, 0, 8, 8)) == (0, 1)


def test_a_prompt_repeated_is_one_prompt_and_a_whole_canvas_region_leaves_no_base():
    same, prompts = layout(((8, 8, 100, 60, "base"), (200, 8, 40, 40, "sky"), (300, 100, 40, 40, "sky")), "base", 640, 320, SCALE, 64)
    assert prompts == ("base", "sky") and same.prompts == 2 and [r.prompt for r in same.rects] == [0, 1, 1]
    weights = same.weights(Window(0, 0, 12, 12))  # inside the base-prompt region: one prompt, weight exactly 1
    np.testing.assert_array_equal(weights[0], 1.0)
    whole, _ = layout(((0, 0, 640, 320, "sky"),), "base", 640, 320, SCALE, 64)
    for y, x in ((0, 0), (20, 40), (24, 56)):
        assert whole.touches(Window(y, x, 16, 24)) == (1,)


def test_a_torus_feathers_across_the_joined_edge():
    """A region flush with the left edge of a canvas wrapped in x blends into the columns at the
    right edge, as a region across the join would; on a plain canvas it keeps full strength there."""
    plain, _ = layout(((0, 0, 160, 320, "sky"),), "base", 640, 320, SCALE, 64)
    torus, _ = layout(((0, 0, 160, 320, "sky"),), "base", 640, 320, SCALE, 64, wrap_x=True)
    assert plain.weights(Window(0, 0, 1, 1))[1, 0, 0] == 1.0
    edge = torus.weights(Window(0, 76, 1, 8))[1, 0]  # columns 76..83: the last four and, wrapped, the first four
    assert 0 < edge[3] < 0.5 < edge[4] < 1
    np.testing.assert_allclose(edge, 1 - edge[::-1], atol=1e-12)  # symmetric about the join
    np.testing.assert_allclose(torus.weights(Window(0, 78, 4, 4)), torus.weights(Window(0, -2, 4, 4)), atol=0)
