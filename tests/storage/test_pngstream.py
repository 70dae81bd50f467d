import io
import struct

import numpy as np
import pytest
from PIL import Image

from gigacanvas.storage.pngstream import PngStream


def _encode(image, band=7, texts=(("gigacanvas", '{"a": 1}'),)):
    buffer = io.BytesIO()
    stream = PngStream(buffer, image.shape[1], image.shape[0], list(texts))
    for y in range(0, len(image), band):
        stream.write(image[y : y + band])
    stream.close()
    return buffer.getvalue()


def _kinds(data):
    kinds, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    return kinds


@pytest.mark.parametrize("band", [1, 7, 64, 1000])
def test_bands_of_any_height_give_the_picture_pillow_reads(band):
    rng = np.random.default_rng(band)
    yy, xx = np.mgrid[0:131, 0:97]
    smooth = np.stack([xx * 2, yy, xx + yy], -1) % 256 + rng.integers(0, 3, (131, 97, 3))
    for image in (rng.integers(0, 256, (131, 97, 3), dtype=np.uint8), smooth.astype(np.uint8)):
        data = _encode(image, band, [("gigacanvas", '{"a": 1}'), ("parameters", "ein Fuchs 狐")])
        with Image.open(io.BytesIO(data)) as im:
            np.testing.assert_array_equal(np.asarray(im), image)
            assert im.text == {"gigacanvas": '{"a": 1}', "parameters": "ein Fuchs 狐"}  # iTXt for the non-Latin-1
        kinds = _kinds(data)
        assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
        assert max(i for i, k in enumerate(kinds) if k in (b"tEXt", b"iTXt")) < kinds.index(b"IDAT")


def test_adaptive_filters_compress_a_smooth_picture_like_pillow():
    yy, xx = np.mgrid[0:256, 0:384]
    image = np.stack([xx % 256, yy, (xx + yy) // 2 % 256], -1).astype(np.uint8)
    ours = len(_encode(image, 64))
    pillow = io.BytesIO()
    Image.fromarray(image).save(pillow, format="PNG")
    assert ours < 1.2 * len(pillow.getvalue())


def test_wrong_or_missing_rows_are_refused():
    stream = PngStream(io.BytesIO(), 4, 3, [])
    with pytest.raises(ValueError, match=r"rows must be \(n, 4, 3\) uint8"):
        stream.write(np.zeros((1, 4, 3), np.float32))
    stream.write(np.zeros((2, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="got 2 of its 3 rows"):
        stream.close()
    with pytest.raises(ValueError, match="more than the 3 rows"):
        stream.write(np.zeros((2, 4, 3), np.uint8))


def test_an_rgba_stream_gives_the_picture_with_its_alpha():
    """An upscale that keeps its source's transparency writes RGBA (colour type 6)."""
    image = np.random.default_rng(1).integers(0, 256, (70, 33, 4), dtype=np.uint8)
    buffer = io.BytesIO()
    stream = PngStream(buffer, 33, 70, [], channels=4)
    for y in range(0, 70, 9):
        stream.write(image[y : y + 9])
    stream.close()
    with Image.open(io.BytesIO(buffer.getvalue())) as im:
        assert im.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(im), image)
