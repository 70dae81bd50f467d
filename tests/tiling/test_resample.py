import numpy as np
from PIL import Image

from gigacanvas.storage.outputs import with_alpha
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.resample import resize_window


def _whole(image: np.ndarray, h: int, w: int) -> np.ndarray:
    with Image.fromarray(image) as im:
        return np.asarray(im.resize((w, h), Image.LANCZOS))


def test_a_window_of_a_resize_is_close_to_the_whole_resize_and_the_same_every_time():
    """Not bit for bit (Pillow's box resize differs by a few levels): why callers keep their
    windows fixed by a plan, and why the output's alpha is resized whole."""
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    whole = _whole(image, 192, 256)
    window = Window(64, 32, 16, 128)
    part = resize_window(image, 192, 256, window)
    np.testing.assert_array_equal(part, resize_window(image, 192, 256, window))
    assert part.shape == (16, 128, 3)
    assert np.abs(part.astype(int) - whole[window.slices]).mean() < 16  # random noise: the worst case
    np.testing.assert_array_equal(resize_window(image, 192, 256, Window(0, 0, 192, 256)), whole)


def test_the_output_alpha_band_by_band_is_the_source_alpha_resized_whole():
    rng = np.random.default_rng(3)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    bands = [rgb[y : y + 16] for y in range(0, 100, 16)]
    out = np.concatenate(list(with_alpha(iter(bands), alpha, 100, 150)))
    np.testing.assert_array_equal(out[..., :3], rgb)
    np.testing.assert_array_equal(out[..., 3], _whole(alpha, 100, 150))


def test_on_a_torus_the_resize_is_periodic_and_a_window_across_the_edge_continues_it():
    """Along a wrapped axis the picture repeats: the resize of a rolled picture is the rolled
    resize (no edge is special), and a window reaching past the edge is the whole's wrap-around.
    The plain resize clamps at the edges, so it differs there and only there."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    whole = Window(0, 0, 48, 80)
    torus = resize_window(image, 48, 80, whole, (True, True))
    rolled = resize_window(np.roll(image, (3, 5), (0, 1)), 48, 80, whole, (True, True))
    np.testing.assert_array_equal(rolled, np.roll(torus, (6, 10), (0, 1)))
    across = resize_window(image, 48, 80, Window(40, 70, 16, 20), (True, True))
    np.testing.assert_array_equal(across, np.tile(torus, (2, 2, 1))[40:56, 70:90])
    plain = resize_window(image, 48, 80, whole)
    np.testing.assert_array_equal(plain[8:-8, 8:-8], torus[8:-8, 8:-8])
    assert np.abs(plain[:, :2].astype(int) - torus[:, :2]).mean() > 5  # the clamped edge
    columns = resize_window(image, 48, 80, whole, (False, True))  # one axis: the rows clamp as before
    np.testing.assert_array_equal(columns[:, 8:-8], plain[:, 8:-8])
    np.testing.assert_array_equal(columns[8:-8], torus[8:-8])


def test_a_wrapped_upscale_keeps_its_alpha_periodic_like_its_colour():
    rng = np.random.default_rng(5)
    alpha = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgb = np.zeros((100, 150, 3), dtype=np.uint8)
    out = np.concatenate(list(with_alpha(iter([rgb[:50], rgb[50:]]), alpha, 100, 150, (True, True))))
    np.testing.assert_array_equal(out[..., 3], resize_window(alpha, 100, 150, Window(0, 0, 100, 150), (True, True)))


# --- the crops an upscale model sees (source_crop, gather) ---

from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling.resample import LANCZOS_SUPPORT, gather, source_crop


@st.composite
def _axis(draw):
    """(source length, canvas length, window start, window length, wrapped) along one axis; a
    wrapped window may start anywhere around the torus and be longer than the canvas (a halo)."""
    src, canvas = draw(st.integers(1, 300)), draw(st.integers(1, 3000))
    wrapped = draw(st.booleans())
    if wrapped:
        return src, canvas, draw(st.integers(-canvas, 2 * canvas)), draw(st.integers(1, 2 * canvas)), True
    start = draw(st.integers(0, canvas - 1))
    return src, canvas, start, draw(st.integers(1, canvas - start)), False


@settings(max_examples=300, deadline=None)
@given(rows=_axis(), cols=_axis(), context=st.integers(0, 32), factor=st.integers(1, 8))
def test_a_crop_holds_its_window_the_models_context_and_the_filters_reach(rows, cols, context, factor):
    """Along each axis the crop reaches `context` source pixels past the window and, on the
    model's output, LANCZOS's reach past that, unless it meets the picture's edge along an
    unwrapped axis (where the whole picture's resize clamps too): so the box `resize_window` takes
    lies inside the crop's output, and the model sees real pixels around the window."""
    window = Window(rows[2], cols[2], rows[3], cols[3])
    crop = source_crop(rows[0], cols[0], rows[1], cols[1], window, context, factor, (rows[4], cols[4]))
    for (src, canvas, start, size, wrapped), c0, length in ((rows, crop.y, crop.h), (cols, crop.x, crop.w)):
        scale = src / canvas
        reach = LANCZOS_SUPPORT * max(1.0, scale * factor)  # in the model's output pixels
        lo, hi = start * scale * factor, (start + size) * scale * factor  # the box, in the whole output
        assert length >= 1
        if not wrapped:
            assert 0 <= c0 and c0 + length <= src
        assert c0 == 0 and not wrapped or lo - c0 * factor >= context * factor + reach - 1e-9
        assert c0 + length == src and not wrapped or (c0 + length) * factor - hi >= context * factor + reach - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), y=st.integers(-30, 30), x=st.integers(-30, 30),
    ch=st.integers(1, 40), cw=st.integers(1, 40),
)
def test_a_gathered_crop_is_the_periodic_pictures(h, w, y, x, ch, cw):
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3)
    oy, ox = -(-30 // h) * h, -(-30 // w) * w  # whole periods past the most negative start
    tiled = np.tile(image, ((oy + 70) // h + 1, (ox + 70) // w + 1, 1))  # the picture repeated past any crop
    np.testing.assert_array_equal(gather(image, Window(y, x, ch, cw)), tiled[y + oy : y + oy + ch, x + ox : x + ox + cw])


@settings(max_examples=200, deadline=None)
@given(
    factor=st.integers(1, 4), wrap=st.tuples(st.booleans(), st.booleans()),
    window=st.tuples(st.integers(-40, 140), st.integers(-40, 140), st.integers(1, 60), st.integers(1, 60)),
)
def test_lanczos_from_a_crops_model_output_is_the_whole_outputs_resize(factor, wrap, window):
    """With a model that repeats each pixel `factor` times (nearest neighbour), the window resized
    from its crop's output is the window of the whole output's resize, on a smooth picture to within
    a few levels (Pillow's box resize is not shift-invariant to the bit: tiling/resample.py)."""
    y, x = np.mgrid[0:24, 0:32] * 2 * np.pi / np.array([24, 32])[:, None, None]  # smooth on the torus too
    image = np.stack([128 + 60 * np.sin(y) + 60 * np.cos(x), 128 + 100 * np.sin(y + x), 128 + 100 * np.cos(2 * x)], -1)
    image = np.round(image).astype(np.uint8)

    def up(a):
        return np.repeat(np.repeat(a, factor, 0), factor, 1)

    ch, cw = 96, 128
    y, x, h, w = window
    if not wrap[0]:
        y = min(max(y, 0), ch - 1)
        h = min(h, ch - y)
    if not wrap[1]:
        x = min(max(x, 0), cw - 1)
        w = min(w, cw - x)
    win = Window(y, x, h, w)
    crop = source_crop(24, 32, ch, cw, win, 2, factor, wrap)
    part = resize_window(up(gather(image, crop)), ch, cw, win, origin=(crop.y * factor, crop.x * factor), full=(24 * factor, 32 * factor))
    whole = resize_window(up(image), ch, cw, win, wrap)
    diff = np.abs(part.astype(int) - whole)
    # A quarter of a level on average, and one value may be one level off whatever the window's size
    # (a 1 x 1 window's one channel off by 1 is a mean of 1/3). Measured over 4000 random windows: at
    # most 2, and 0.17 mean past 16 px; one output pixel off is about 4 on most values.
    assert diff.max() <= 3 and diff.sum() <= 0.25 * diff.size + 1
