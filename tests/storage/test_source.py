"""storage/source.py: the formats, modes, transparency and orientation of an upscale's picture."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from gigacanvas.errors import UsageError
from gigacanvas.storage.source import read_source

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
