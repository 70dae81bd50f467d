import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling import NOISE_CHUNK, Window, initial_noise, noise_window


@given(
    st.integers(0, 2**63 - 1),
    st.integers(1, 3 * NOISE_CHUNK),
    st.integers(1, 3 * NOISE_CHUNK),
    st.data(),
)
@settings(max_examples=25, deadline=None)
def test_noise_of_a_window_is_independent_of_the_canvas_around_it(seed, height, width, data):
    y = data.draw(st.integers(0, height - 1))
    x = data.draw(st.integers(0, width - 1))
    h = data.draw(st.integers(1, height - y))
    w = data.draw(st.integers(1, width - x))
    canvas = initial_noise(seed, 4, height, width)
    bigger = initial_noise(seed, 4, height + 17, width + 33)
    window = noise_window(seed, 4, Window(y, x, h, w))
    np.testing.assert_array_equal(canvas[:, y : y + h, x : x + w], window)
    np.testing.assert_array_equal(bigger[:, :height, :width], canvas)


def test_noise_is_standard_normal_float32_and_seeded():
    a = initial_noise(7, 16, 128, 96)
    assert a.dtype == np.float32 and a.shape == (16, 128, 96)
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
    np.testing.assert_array_equal(a, initial_noise(7, 16, 128, 96))
    assert not np.array_equal(a, initial_noise(8, 16, 128, 96))
    # chunks are independent draws, not copies of each other
    assert not np.array_equal(a[:, :NOISE_CHUNK, :NOISE_CHUNK], a[:, NOISE_CHUNK:, :NOISE_CHUNK])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), step=st.integers(0, 60), y=st.integers(0, 150), h=st.integers(1, 90))
def test_step_noise_of_any_rows_is_those_rows_of_the_whole_and_its_own_stream(seed, step, y, h):
    from gigacanvas.tiling.noise import step_noise_window

    width = 70
    whole = step_noise_window(seed, step, 4, Window(0, 0, y + h, width))
    np.testing.assert_array_equal(step_noise_window(seed, step, 4, Window(y, 0, h, width)), whole[:, y:])
    assert not np.array_equal(whole, noise_window(seed, 4, Window(0, 0, y + h, width)))  # not the initial noise
    assert not np.array_equal(whole, step_noise_window(seed, step + 1, 4, Window(0, 0, y + h, width)))
