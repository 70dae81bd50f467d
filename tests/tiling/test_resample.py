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
