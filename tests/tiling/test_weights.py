import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gigacanvas.tiling import gaussian_weights


@given(st.integers(1, 160), st.integers(1, 160))
def test_weights_are_positive_symmetric_and_centre_peaked(h, w):
    weights = gaussian_weights(h, w)
    assert weights.shape == (h, w)
    assert (weights > 0).all()
    np.testing.assert_array_equal(weights, weights[::-1, :])  # centred on (n - 1) / 2
    np.testing.assert_array_equal(weights, weights[:, ::-1])
    assert weights.max() == weights[(h - 1) // 2, (w - 1) // 2] <= 1.0
    # monotone from the centre out along the middle row
    row = weights[(h - 1) // 2, (w - 1) // 2 :]
    assert (np.diff(row) <= 0).all()


def test_corner_weight_is_tiny_but_positive():
    weights = gaussian_weights(128, 128)
    assert 0 < weights[0, 0] < 1e-9
