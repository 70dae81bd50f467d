import numpy as np
import pytest
from PIL import Image

from gigacanvas.errors import UsageError
from gigacanvas.storage import read_png_spec, write_png


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
