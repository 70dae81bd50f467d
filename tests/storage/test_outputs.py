"""Outputs by suffix, written from the store band by band (outputs.py)."""

import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from gigacanvas.errors import UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.outputs import (
    MAX_PNG_SIDE,
    check_out_name,
    existing_output_spec,
    output_kind,
    read_output_spec,
    store_beside,
    write_output,
)
from gigacanvas.storage.picture import read_png_spec
from tests.helpers import finished_store

PICTURE = {"prompt": "a kite", "seed": 3}


def _read(path):
    if path.endswith(".png"):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    if path.endswith(".tif"):
        return tifffile.imread(path)
    return zarr.open_group(path, mode="r")["0"][...].transpose(1, 2, 0)


def test_suffixes_pick_the_format_and_the_store_beside_it():
    assert [output_kind(o) for o in ("a.PNG", "a.tif", "b.TIFF", "c.ome.zarr/", "d.zarr", "e.jpg")] == [
        "png", "tiff", "tiff", "ome-zarr", None, None]
    assert store_beside("x/p.tif") == "x/p.zarr" and store_beside("s3://b/p.png") == "s3://b/p.zarr"
    assert store_beside("x/p.ome.zarr/") == "x/p.ome.zarr"  # the store is the output
    check_out_name("a.png", MAX_PNG_SIDE, MAX_PNG_SIDE)
    check_out_name("a.tif", 4 * MAX_PNG_SIDE, 16)
    with pytest.raises(UsageError, match="must end in .png, .tif, .tiff or .ome.zarr"):
        check_out_name("a.jpg", 16, 16)
    with pytest.raises(UsageError) as caught:
        check_out_name("big.png", MAX_PNG_SIDE + 16, 16)
    assert "a PNG is at most 16384 px a side" in str(caught.value) and "(--out big.tif)" in str(caught.value)


@pytest.mark.parametrize("name", ["p.png", "p.tif", "p.ome.zarr"])
def test_each_format_reads_back_equal_to_the_stores_image(tmp_path, name):
    store, image = finished_store(str(tmp_path / "s.zarr"), 1104, 552)
    out = str(tmp_path / name)
    assert write_output(out, store, PICTURE, "a kite\nSteps: 2") == out
    np.testing.assert_array_equal(_read(out), image)
    assert read_output_spec(out) == PICTURE and existing_output_spec(out) == PICTURE
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.zarr", name])  # no temp file left


def test_the_store_itself_is_the_ome_zarr_output(tmp_path):
    url = str(tmp_path / "p.ome.zarr")
    store, image = finished_store(url, 512, 256)
    assert write_output(url, store, PICTURE, "") == url
    np.testing.assert_array_equal(_read(url), image)
    assert read_output_spec(url) == PICTURE and LatentStore(url).inspect().kind == "ours"


def _peaks(tmp_path, height):
    """Peak traced bytes of writing each output (the store's levels first) of a 1024-wide picture."""
    yy, xx = np.mgrid[0:height, 0:1024]
    image = np.stack([xx % 256, yy % 256, (xx ^ yy) % 256], -1).astype(np.uint8)  # cheap to compress
    store, _ = finished_store(str(tmp_path / f"s{height}.zarr"), height, 1024, image=image)
    del image, yy, xx
    reads, peaks = [], {}
    rows = store.image_rows
    store.image_rows = lambda y0, y1: reads.append(y1 - y0) or rows(y0, y1)
    for name in ("p.png", "p.tif", "p.ome.zarr"):
        tracemalloc.start()
        write_output(str(tmp_path / f"{height}{name}"), store, PICTURE, "")
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert max(reads) == 1024  # one band (a chunk row of `image`) at a time
    return peaks


def test_the_levels_do_not_grow_with_the_width(tmp_path):
    """Eight times the width, about the same peak for the multiscale levels (the OME-Zarr output is
    the levels alone): they are built in squares, not in bands that are as wide as the picture."""
    peaks = {}
    for width in (1024, 8192):
        store, _ = finished_store(str(tmp_path / f"w{width}.zarr"), 1024, width, image=np.full((1024, width, 3), 7, np.uint8))
        tracemalloc.start()
        write_output(str(tmp_path / f"w{width}.ome.zarr"), store, PICTURE, "")
        peaks[width] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[8192] < 1.25 * peaks[1024] + 1024 * 1024 * 3 / 4, peaks


def test_outputs_are_written_band_by_band(tmp_path):
    """Four times the rows, the same peak: no output holds more than a band or so (the pyramid's
    carry of lower levels included), however tall the picture."""
    short, tall = _peaks(tmp_path, 2048), _peaks(tmp_path, 8 * 1024)
    band = 1024 * 1024 * 3
    for name in short:
        assert tall[name] < 1.25 * short[name] + band / 4, (name, short[name] / band, tall[name] / band)
        assert tall[name] < 8 * 1024 * 1024 * 3 * 1.5, name  # under the picture's own 8 bands x 1.5


@pytest.mark.parametrize("name", ["p.png", "p.tif", "p.ome.zarr"])
def test_a_failure_mid_write_leaves_the_old_output(tmp_path, name):
    store, image = finished_store(str(tmp_path / "s.zarr"), 4096, 256)  # two bands, two squares of the levels
    out = str(tmp_path / name)
    write_output(out, store, PICTURE, "")
    rows, block = store.image_rows, store.image_block

    def fail_after_first(y0, *rest):
        if y0 > 0:
            raise OSError(28, "No space left on device")
        return (block if len(rest) == 2 else rows)(y0, *rest)

    store.image_rows = fail_after_first  # the PNG and TIFF read the picture in bands
    store.image_block = fail_after_first  # the levels in squares
    store.set_attrs(ome=None)  # the levels are rebuilt from the image: that fails too
    with pytest.raises(OSError):
        write_output(out, store, {"prompt": "new"}, "")
    assert read_output_spec(out) == PICTURE
    np.testing.assert_array_equal(_read(out), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s.zarr", name])


@pytest.mark.parametrize("name", ["keep.png", "keep.tif", "keep.ome.zarr"])
def test_a_place_holding_something_not_ours_is_refused(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".zarr"):
        path.mkdir()
        (path / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    elif name.endswith(".tif"):
        tifffile.imwrite(path, np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    else:
        Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(UsageError, match="exists and is not a gigacanvas picture; gigacanvas never replaces it"):
        existing_output_spec(str(path))
    assert existing_output_spec(str(tmp_path / "new.png")) is None


def test_png_keeps_its_spec_chunk_before_the_pixels(tmp_path):
    store, _ = finished_store(str(tmp_path / "s.zarr"), 256, 256)
    out = write_output(str(tmp_path / "p.png"), store, PICTURE, "a kite")
    assert read_png_spec(out) == PICTURE
    with Image.open(out) as im:
        assert im.text["parameters"] == "a kite"
