"""The pyramidal BigTIFF (tiff.py)."""

import numpy as np
import pytest
import tifffile
import zarr

from gigacanvas.errors import UsageError
from gigacanvas.storage.multiscale import build_levels
from gigacanvas.storage.tiff import read_tiff_spec, write_tiff
from tests.helpers import finished_store

PICTURE = {"prompt": "a kite", "seed": 3}


def test_a_tiff_holds_the_picture_its_levels_and_its_spec(tmp_path):
    url = str(tmp_path / "s.zarr")
    store, image = finished_store(url, 1496, 1200)  # tiles and bands with ragged edges
    build_levels(store, PICTURE)
    path = write_tiff(tmp_path / "p.tif", store, PICTURE)
    np.testing.assert_array_equal(tifffile.imread(path), image)
    group = zarr.open_group(url, mode="r")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        page = tif.pages.first
        assert page.is_tiled and page.tilewidth == 512 and page.photometric == tifffile.PHOTOMETRIC.RGB
        levels = tif.series[0].levels
        assert len(levels) == 3
        for k, level in enumerate(levels):
            np.testing.assert_array_equal(level.asarray(), group[str(k)][...].transpose(1, 2, 0))
    assert read_tiff_spec(path) == PICTURE
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr", "p.tif"] or sorted(p.name for p in tmp_path.iterdir()) == ["p.tif", "s.zarr"]


def test_a_tiff_that_is_not_ours_has_no_spec(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "text.tif", np.zeros((8, 8), np.uint8), description="hello", metadata=None)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff at all")
    for name, message in (("plain.tif", "without a gigacanvas spec"), ("text.tif", "without a gigacanvas spec"),
                          ("junk.tif", "is not a readable TIFF")):
        with pytest.raises(UsageError, match=message):
            read_tiff_spec(tmp_path / name)
