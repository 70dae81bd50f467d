import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.tiling import plan_tiles
from gigacanvas.tiling.bands import batch_cuts, cut_rows, join_rows


@given(height=st.integers(4, 80), tile=st.integers(4, 32), edges=st.lists(st.integers(1, 79), max_size=4, unique=True))
def test_cutting_tiles_by_bands_and_joining_them_again_is_the_identity(height, tile, edges):
    grid = plan_tiles(height, 20, tile, tile // 4)
    cuts_at = sorted({0, height, *(e for e in edges if e < height)})
    bands = list(zip(cuts_at, cuts_at[1:]))
    rng = np.random.default_rng(height)
    latent = rng.standard_normal((2, height, 20)).astype(np.float32)
    for batch in grid.batches(3):
        cuts = batch_cuts(grid.windows, batch, bands)
        tiles = np.stack([latent[(slice(None), *grid.windows[i].slices)] for i in batch])
        parts = cut_rows(tiles, cuts)
        assert all(sum(p[i].shape[1] for p in parts if p[i] is not None) == grid.tile_h for i in range(len(batch)))
        np.testing.assert_array_equal(join_rows(parts), tiles)


@settings(max_examples=40, deadline=None)
@given(height=st.integers(8, 80), tile=st.integers(4, 32), phase=st.integers(0, 80),
       edges=st.lists(st.integers(1, 79), max_size=4, unique=True))
def test_on_a_torus_cutting_and_joining_is_the_identity_across_the_joined_edge(height, tile, phase, edges):
    from gigacanvas.tiling.shift import shifted_tiles

    grid = shifted_tiles(height, 20, tile, tile // 4, phase, phase, True, True)
    cuts_at = sorted({0, height, *(e for e in edges if e < height)})
    bands = list(zip(cuts_at, cuts_at[1:]))
    rng = np.random.default_rng(height)
    latent = rng.standard_normal((2, height, 20)).astype(np.float32)

    def window(w):
        return latent[:, (w.y + np.arange(w.h)) % height][:, :, (w.x + np.arange(w.w)) % 20]

    for batch in grid.batches(3):
        cuts = batch_cuts(grid.windows, batch, bands, height)
        tiles = np.stack([window(grid.windows[i]) for i in batch])
        parts = cut_rows(tiles, cuts)
        for i in range(len(batch)):  # each band gets exactly its own rows of the tile
            for (b, _), part in zip(cuts, parts):
                if part[i] is not None:
                    rows = (grid.windows[batch[i]].y + np.arange(grid.tile_h)) % height
                    mine = (rows >= bands[b][0]) & (rows < bands[b][1])
                    np.testing.assert_array_equal(part[i], tiles[i][:, mine])
        np.testing.assert_array_equal(join_rows(parts, cuts), tiles)
