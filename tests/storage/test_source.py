"""storage/source.py: the formats, modes, transparency and orientation of an upscale's picture."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from gigacanvas.errors import UsageError
from gigacanvas.storage.source import probe_source, read_source

RGB = np.random.default_rng(5).integers(0, 256, (12, 20, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix, options", [(".png", {}), (".tif", {}), (".webp", {"lossless": True}), (".jpg", {"quality": 100, "subsampling": 0})])
def test_each_format_reads_as_rgb_with_its_fingerprint(suffix, options, tmp_path):
    path = tmp_path / f"p{suffix}"
    Image.fromarray(RGB).save(path, **options)
    source = read_source(str(path))
    assert source.rgb.shape == (12, 20, 3) and source.alpha is None
    assert source.fingerprint == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    if suffix != ".jpg":  # lossless
        np.testing.assert_array_equal(source.rgb, RGB)
    else:
        assert np.abs(source.rgb.astype(int) - RGB).mean() < 8


def test_transparency_is_read_and_the_colour_is_composited_over_white(tmp_path):
    rgba = np.dstack([RGB, np.full((12, 20), 255, np.uint8)])
    rgba[:, :10, 3] = 0  # the left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    source = read_source(str(tmp_path / "a.png"))
    np.testing.assert_array_equal(source.alpha, rgba[..., 3])
    assert (source.rgb[:, :10] == 255).all()
    np.testing.assert_array_equal(source.rgb[:, 10:], RGB[:, 10:])


def test_a_palette_with_a_transparent_entry_has_alpha(tmp_path):
    im = Image.fromarray((RGB[..., 0] // 64).astype(np.uint8), "P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    source = read_source(str(tmp_path / "p.png"))
    assert source.alpha is not None and set(np.unique(source.alpha)) <= {0, 255}
    assert ((source.alpha == 0) == (RGB[..., 0] // 64 == 0)).all()


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(RGB).save(tmp_path / "o.jpg", exif=exif, quality=100)
    assert read_source(str(tmp_path / "o.jpg")).rgb.shape == (20, 12, 3)


def test_a_picture_that_changed_is_refused_with_its_fingerprints(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "p.png")
    with pytest.raises(UsageError, match="is not the picture this upscale started from"):
        read_source(str(tmp_path / "p.png"), expect="sha256:" + "0" * 64)


def test_a_multi_page_tiff_is_refused(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "m.tif", save_all=True, append_images=[Image.fromarray(RGB[::-1].copy())])
    with pytest.raises(UsageError, match="has 2 frames"):
        read_source(str(tmp_path / "m.tif"))


def test_a_large_file_that_is_no_picture_is_refused_from_its_header_unread(tmp_path, monkeypatch):
    """A film passed by mistake is refused before its bytes are read whole (they were, up to 4 GiB)."""
    from gigacanvas.storage import picture

    path = tmp_path / "holiday.mp4"
    with open(path, "wb") as file:
        file.write(b"\0\0\0\x18ftypmp42")
        file.truncate(64 << 20)  # sparse: 64 MiB on no disk
    reads = []
    opened = picture.open_regular

    def counting(*args):
        file = opened(*args)
        real = file.read
        file.read = lambda n=-1: reads.append(n) or real(n)  # noqa: B023
        return file

    monkeypatch.setattr("gigacanvas.storage.source.open_picture", counting)
    with pytest.raises(UsageError, match="is not a picture upscale can read"):
        read_source(str(path))
    assert all(0 <= n < 1 << 20 for n in reads), reads


def test_the_probe_agrees_with_the_read_and_decodes_no_pixels(tmp_path, monkeypatch):
    """What an upscale's spec and dry run use (`probe_source`): the read's sides (orientation
    applied), fingerprint and transparency, from the header and the bytes hashed in chunks, with
    no pixel decoded and nothing picture-sized held (a dry run of a 16K picture held 4 GB)."""
    import tracemalloc

    from PIL import ImageFile

    big = np.random.default_rng(6).integers(0, 256, (768, 768, 4), dtype=np.uint8)  # 2.25 MiB
    Image.fromarray(big, "RGBA").save(tmp_path / "big.png", compress_level=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(RGB).save(tmp_path / "o.jpg", exif=exif, quality=100)
    Image.fromarray(RGB).save(tmp_path / "p.webp", lossless=True)
    cases = ("big.png", "o.jpg", "p.webp")
    read = {name: read_source(str(tmp_path / name)) for name in cases[1:]}

    def no_decoding(self):
        raise AssertionError("the probe decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    tracemalloc.start()
    try:
        probed = {name: probe_source(str(tmp_path / name)) for name in cases}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak  # a chunk of the file at a time (256 KiB), never the whole file or picture
    big_png = probed["big.png"]
    assert (big_png.width, big_png.height, big_png.transparent) == (768, 768, True)
    assert big_png.fingerprint == "sha256:" + hashlib.sha256((tmp_path / "big.png").read_bytes()).hexdigest()
    for name in cases[1:]:
        info, source = probed[name], read[name]
        assert (info.height, info.width) == source.rgb.shape[:2] and info.fingerprint == source.fingerprint
        assert info.transparent == (source.alpha is not None)
    assert (probed["o.jpg"].width, probed["o.jpg"].height) == (12, 20)
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="is damaged"):  # a PNG's chunks are checked, not inflated
        probe_source(str(tmp_path / "cut.png"))
