"""tiling/compose.py: a composed render's stage sizes and the step a refinement starts at."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gigacanvas.tiling.compose import composition_size, stage_sizes, start_step


@given(st.integers(1, 64), st.integers(1, 64))
def test_the_composition_has_about_the_native_area_and_the_canvas_aspect(wq, hq):
    width, height = wq * 256, hq * 256
    w, h = composition_size(width, height, 256, 16)
    assert w % 16 == 0 and h % 16 == 0 and w <= width and h <= height
    if 16 * 16 * 4 <= width and 16 * 16 * 4 <= height:  # sides far from the alignment's rounding
        assert abs(w * h / 256**2 - 1) < 0.2
        assert abs((w / h) / (width / height) - 1) < 0.2


def test_stages_double_from_the_composition_and_end_at_the_canvas():
    assert stage_sizes(1024, 512, 256, 16, 1) == ((368, 176), (1024, 512))
    assert stage_sizes(2048, 1024, 256, 16, 3) == ((368, 176), (736, 352), (1472, 704), (2048, 1024))
    with pytest.raises(ValueError, match="at most 3 stage"):
        stage_sizes(2048, 1024, 256, 16, 4)
    with pytest.raises(ValueError, match="no larger than the model's native area"):
        stage_sizes(256, 256, 256, 16, 1)


@pytest.mark.parametrize(
    "steps, strength, start",
    [(28, 0.6, 11), (28, 1.0, 0), (4, 0.6, 1), (3, 0.6, 1), (3, 0.9, 0), (10, 0.05, 9), (1, 0.01, 0)],
)
def test_the_start_step_is_diffusers_img2img_t_start(steps, strength, start):
    assert start_step(steps, strength) == start
    assert steps - start >= 1  # a refinement always runs a step
