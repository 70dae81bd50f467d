"""The seamless decode's plan: cores partition the canvas; windows are cores plus the halo."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from gigacanvas.tiling.decodetiles import plan_decode_tiles


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
