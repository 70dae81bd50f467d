import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from gigacanvas.errors import UsageError
from gigacanvas.storage import read_png_spec, write_png
from tests.helpers import error_reading_fifo


def test_png_carries_its_spec_and_parameters(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    path = write_png(tmp_path / "p.png", image, {"prompt": "a cat", "seed": 3}, "a cat\nSteps: 2")
    with Image.open(path) as im:
        assert im.size == (48, 32)
        np.testing.assert_array_equal(np.asarray(im), image)
        assert im.text["parameters"] == "a cat\nSteps: 2"
    assert read_png_spec(path) == {"prompt": "a cat", "seed": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temp file left behind


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "p.png"
    path.write_bytes(b"old")
    with pytest.raises(Exception):
        write_png(path, np.zeros((4, 4), dtype=np.float64), {}, "")  # not an RGB image
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_foreign_png_has_no_spec(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(UsageError, match="without a gigacanvas spec"):
        read_png_spec(tmp_path / "plain.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="not a readable PNG"):
        read_png_spec(tmp_path / "broken.png")


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_png(tmp_path / "p.png", np.zeros((2, 2, 3), np.uint8), {}, "")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only 0o600


# Pictures from anywhere (issue 8): the spec is read from the chunk stream, never from the pixels.


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(*chunks: bytes, width=1, height=1, depth=8, colour=2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return PNG + _chunk(b"IHDR", ihdr) + b"".join(chunks) + _chunk(b"IEND", b"")


def _idat(width, height, depth=8, channels=3) -> bytes:
    row = bytes(1 + -(-width * channels * depth // 8))  # filter byte 0, then zero pixels
    packer = zlib.compressobj(1)
    data = b"".join(packer.compress(row * 1000) for _ in range(height // 1000))
    return _chunk(b"IDAT", data + packer.compress(row * (height % 1000)) + packer.flush())


PNG = b"\x89PNG\r\n\x1a\n"
SPEC = {"prompt": "a very large fox", "width": 20000, "height": 20000}
TEXT = _chunk(b"tEXt", b"gigacanvas\0" + json.dumps(SPEC).encode())
ZIP_BOMB = _chunk(b"zTXt", b"gigacanvas\0\0" + zlib.compress(b"[" * (8 << 20)))  # 8 MiB from 8 KiB


def test_spec_text_comes_before_the_pixels(tmp_path):
    path = write_png(tmp_path / "p.png", np.zeros((2, 2, 3), np.uint8), {"prompt": "x"}, "x")
    data, kinds, at = path.read_bytes(), [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kinds.append(data[at + 4 : at + 8])
        at += 12 + length
    assert kinds.index(b"tEXt") < kinds.index(b"IDAT"), kinds


def test_a_picture_over_pillows_pixel_limit_gives_its_spec(tmp_path):
    path = tmp_path / "big.png"  # a real 400-megapixel 1-bit picture, 50 MB of pixels once inflated
    path.write_bytes(_png(TEXT, _idat(20000, 20000, depth=1, channels=1), width=20000, height=20000, depth=1, colour=0))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    assert read_png_spec(path) == SPEC


def test_a_header_claiming_a_huge_picture_gives_its_spec(tmp_path):
    path = tmp_path / "claims.png"
    path.write_bytes(_png(TEXT, _idat(1, 1), width=100_000, height=100_000))
    assert read_png_spec(path) == SPEC


@pytest.mark.parametrize("chunk", [[1, 2], None, 3, "text"])
def test_a_spec_chunk_that_is_not_a_mapping_is_refused(tmp_path, chunk):
    path = write_png(tmp_path / "p.png", np.zeros((2, 2, 3), np.uint8), chunk, "")
    with pytest.raises(UsageError, match="has a gigacanvas spec that is not a mapping of keys to values"):
        read_png_spec(path)


def test_compressed_and_international_spec_chunks_are_read(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    for add in ("ztxt", "itxt", "itxt-zip"):
        info = PngInfo()
        text = json.dumps({"prompt": "ein Fuchs 狐"})
        if add == "ztxt":
            info.add_text("gigacanvas", text.encode("ascii", "backslashreplace").decode(), zip=True)
        else:
            info.add_itxt("gigacanvas", text, zip=add == "itxt-zip")
        Image.new("RGB", (3, 3)).save(tmp_path / f"{add}.png", pnginfo=info)
        assert read_png_spec(tmp_path / f"{add}.png") == {"prompt": "ein Fuchs 狐"}


@pytest.mark.parametrize(
    "chunks, message",
    [
        ([ZIP_BOMB], "has a gigacanvas spec chunk over 1 MiB"),
        ([_chunk(b"tEXt", b"gigacanvas\0" + b" " * (2 << 20))], "has a gigacanvas spec chunk over 1 MiB"),
        ([TEXT, TEXT], "has two gigacanvas spec chunks"),
        ([TEXT[:-1] + b"\0"], "has a damaged gigacanvas spec chunk"),
        ([_chunk(b"tEXt", b"gigacanvas\0{")], "has a damaged gigacanvas spec chunk"),
        ([_chunk(b"tEXt", b"gigacanvas\0" + b"[" * 100_000 + b"]" * 100_000)], "has a damaged gigacanvas spec chunk"),
        ([_chunk(b"zTXt", b"gigacanvas\0\0" + zlib.compress(b"{}")[:-3])], "has a damaged gigacanvas spec chunk"),
        ([_chunk(b"tIME", b"1234567")] * 2000, "has over 1024 chunks before its pixels"),
        ([b"\xff\xff\xff\xffjunk"], "is not a readable PNG (damaged chunk)"),
    ],
)
def test_hostile_spec_chunks_are_refused_in_one_line(tmp_path, chunks, message):
    path = tmp_path / "p.png"
    path.write_bytes(_png(*chunks, _idat(1, 1)))
    with pytest.raises(UsageError) as caught:
        read_png_spec(path)
    assert f"picture {path} {message}" in str(caught.value) and "\n" not in str(caught.value)


def test_a_spec_after_the_pixels_is_not_read(tmp_path):
    path = tmp_path / "late.png"
    path.write_bytes(_png(_idat(1, 1), TEXT))
    with pytest.raises(UsageError, match="without a gigacanvas spec"):
        read_png_spec(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_an_existing_output_that_is_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    error = error_reading_fifo(read_png_spec, fifo)
    assert isinstance(error, UsageError), error
    assert f"picture {fifo} is not a regular file but a FIFO" in str(error)
