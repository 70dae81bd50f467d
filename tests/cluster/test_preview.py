"""`gigacanvas preview` and the render's --preview (cluster/preview.py), on stores made without Ray."""

import json

import numpy as np
import pytest
from PIL import Image

from gigacanvas.cluster.preview import SD3_RGB, Previewer, preview_image, project, shrink
from gigacanvas.storage import LatentStore
from gigacanvas.storage.picture import read_png_spec
from tests.helpers import finished_store, run_cli


def _half_finished(tmp_path):
    """A 4-step render stopped mid-way: band 0 at step 2, band 1 still at step 1 (as a live
    render's wavefront leaves them), no picture yet."""
    url = str(tmp_path / "s.zarr")
    store = LatentStore(url)
    store.create({"seed": 1, "steps": 4}, "f" * 16, channels=16, height=256, width=128, scale=8, bands=2)
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((16, 256, 128)).astype(np.float32)
    store.write_noise(latent)
    store.commit_latent(latent * 0.5, 1)
    (y0, y1), _ = store.bands
    store.commit_band(0, latent[:, y0:y1] * 0.25, 2)
    return url, latent * 0.5


def test_shrink_and_project():
    rows = np.arange(5 * 3 * 1, dtype=np.float32).reshape(5, 3, 1)
    np.testing.assert_allclose(shrink(rows, 2)[:, :, 0], [[2, 3.5], [8, 9.5], [12.5, 14]])  # edges repeated
    black = project(np.zeros((1, 1, 16), np.float32))
    assert black.shape == (1, 1, 3) and black.dtype == np.uint8 and SD3_RGB.shape == (16, 3)


def test_preview_of_a_half_finished_store_shows_its_committed_step(tmp_path, capsys):
    url, at_step_1 = _half_finished(tmp_path)
    image, about = preview_image(LatentStore(url), 64)
    assert about["step"] == 1 and about["steps"] == 4 and not about["finished"]
    assert image.shape == (64, 32, 3)
    expected = project(shrink(at_step_1.transpose(1, 2, 0), 4))
    np.testing.assert_array_equal(image, expected)  # every band at step 1, the slower band's step
    out = tmp_path / "small.png"
    code, stdout, err = run_cli(capsys, "preview", "--store", url, "--out", str(out))
    assert code == 0, err
    assert "preview of step 1 of 4 (latent preview), 256x512" in stdout and str(out) in stdout
    with Image.open(out) as im:
        assert im.size == (256, 512)  # the latent's 128x256, shown at up to the picture's size
    assert read_png_spec(out, "gigacanvas-preview")["step"] == 1
    code, _, err = run_cli(capsys, "preview", "--store", url, "--out", str(out), "--size", "40")
    assert code == 0, err  # an earlier preview is replaced
    with Image.open(out) as im:
        assert max(im.size) <= 40


def test_preview_of_a_finished_store_is_its_picture(tmp_path, capsys):
    from gigacanvas.storage.multiscale import build_levels

    store, image = finished_store(str(tmp_path / "s.zarr"), 1536, 768)
    small, about = preview_image(store, 768)  # from `image`: no levels yet
    assert about["finished"] and small.shape == (768, 384, 3)
    block = image[:2, :2].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(small[0, 0], block, atol=0.51)
    build_levels(store, {})
    from_level, _ = preview_image(LatentStore(store.url), 768)
    assert from_level.shape == (768, 384, 3)
    np.testing.assert_allclose(from_level.astype(int), small.astype(int), atol=1)  # level 1 is that mean too
    code, stdout, err = run_cli(capsys, "preview", "--store", store.url, "--out", str(tmp_path / "p.png"), "--size", "100")
    assert code == 0 and "preview of the finished picture, 48x96" in stdout, err


def _user_folder(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "a.txt").write_text("x")
    return str(tmp_path / "user")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda t: str(t / "missing.zarr"), "does not exist; nothing to resume"),
        (lambda t: _user_folder(t), "not a gigacanvas store"),
    ],
)
def test_preview_errors_are_one_line_exit_2(tmp_path, capsys, setup, message):
    url = setup(tmp_path)
    code, stdout, err = run_cli(capsys, "preview", "--store", url, "--out", str(tmp_path / "p.png"))
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("gigacanvas: error: "), err
    assert not (tmp_path / "p.png").exists()


def test_preview_never_replaces_a_file_that_is_no_preview(tmp_path, capsys):
    url, _ = _half_finished(tmp_path)
    keep = tmp_path / "keep.png"
    Image.new("RGB", (4, 4)).save(keep)
    before = keep.read_bytes()
    code, _, err = run_cli(capsys, "preview", "--store", url, "--out", str(keep))
    assert code == 2 and "is not a gigacanvas preview; gigacanvas never replaces it" in err
    assert keep.read_bytes() == before
    code, _, err = run_cli(capsys, "preview", "--store", url, "--out", str(tmp_path / "p.jpg"))
    assert code == 2 and "must end in .png" in err
    code, _, err = run_cli(capsys, "preview", "--store", url, "--out", str(tmp_path / "p.png"), "--size", "0")
    assert code == 2 and "size 0 must be from 1 to 4096" in err


def test_the_previewer_writes_every_nth_step_and_the_last_without_blocking(tmp_path):
    url, _ = _half_finished(tmp_path)
    out = tmp_path / "live.png"
    lines = []
    previewer = Previewer(url, str(out), every=3, last=4, notify=lines.append, size=32)
    previewer.step(1)
    previewer.close()
    assert not out.exists()  # not a 3rd step
    previewer.step(3)
    previewer.step(4)  # while the 3rd is written: folded into one more write
    previewer.close()
    assert json.loads(Image.open(out).text["gigacanvas-preview"])["step"] == 1 and lines == []
    broken = Previewer(str(tmp_path / "gone.zarr"), str(out), every=1, last=4, notify=lines.append)
    broken.step(1)
    broken.close()
    broken.step(2)
    broken.close()
    assert len(lines) == 1 and "preview" in lines[0] and "the render goes on" in lines[0]  # said once
