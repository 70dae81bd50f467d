"""Pictures on object storage: `--out s3://...` against a loopback S3 server (moto)."""

import io

import numpy as np
import pytest
from PIL import Image

from gigacanvas.storage import read_png_spec
from tests.helpers import run_cli, s3_bucket

FLAGS = ["--prompt", "a kite", "--width", "256", "--height", "256", "--steps", "1", "--tile-size", "256",
         "--actors", "1", "--no-progress"]


@pytest.fixture(scope="module")
def bucket():
    with s3_bucket("gigacanvas-out") as url:
        yield url


def _s3_pixels(url: str) -> np.ndarray:
    import s3fs

    with Image.open(io.BytesIO(s3fs.S3FileSystem().cat_file(url))) as im:
        return np.asarray(im.convert("RGB"))


def test_a_render_writes_its_picture_to_s3_once_whole_and_guards_it_like_a_file(bucket, tiny_model, ray_cluster, tmp_path, capsys):
    import s3fs

    out, store = f"{bucket}/posters/kite.png", str(tmp_path / "kite.zarr")
    code, stdout, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", out, "--store", store)
    assert code == 0, err
    assert stdout.strip().endswith(f"-> {out}")
    assert read_png_spec(out)["prompt"] == "a kite"  # the spec travels with it
    # Only the picture: no temporary key left beside it.
    assert s3fs.S3FileSystem().ls(f"{bucket}/posters", detail=False) == [out.removeprefix("s3://")]
    code, stdout, _ = run_cli(capsys, "status", "--store", store)
    assert code == 0 and f"output: {out}" in stdout

    # The same store writes the same picture to a path (no Ray: the store holds it whole).
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", str(tmp_path / "k.png"), "--store", store)
    assert code == 0 and "holds the finished picture" in err, err
    with Image.open(tmp_path / "k.png") as im:
        np.testing.assert_array_equal(_s3_pixels(out), np.asarray(im.convert("RGB")))

    # Another render may not replace it without --overwrite; nothing is started for the refusal.
    code, _, err = run_cli(capsys, "render", *FLAGS[:1], "a boat", *FLAGS[2:], "--model", tiny_model, "--out", out,
                           "--store", str(tmp_path / "boat.zarr"))
    assert code == 2 and f"out {out} holds the picture of another render" in err
    assert not (tmp_path / "boat.zarr").exists()


@pytest.mark.parametrize(
    ("out", "message"),
    [("s3://no-such-bucket/p.png", "bucket no-such-bucket does not exist"),
     ("memory://p.png", "would vanish with this process"),
     ("nosuchproto://b/p.png", "unknown protocol 'nosuchproto'")],
)
def test_an_out_url_gigacanvas_cannot_write_is_refused_before_any_work(bucket, tiny_model, tmp_path, capsys, out, message):
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", out, "--store", str(tmp_path / "s.zarr"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.zarr").exists()


def test_an_object_that_is_no_gigacanvas_picture_or_a_prefix_is_never_replaced(bucket, tiny_model, tmp_path, capsys):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.pipe_file(f"{bucket}/notes.png", b"important")
    fs.pipe_file(f"{bucket}/dir/x.png/inner", b"mine")
    for out, message in ((f"{bucket}/notes.png", "is not a gigacanvas picture; gigacanvas never replaces it"),
                         (f"{bucket}/dir/x.png", "is a folder (objects under")):
        code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", out, "--overwrite",
                               "--store", str(tmp_path / "s.zarr"), "--dry-run")
        assert code == 2 and message in err, err
    assert fs.cat_file(f"{bucket}/notes.png") == b"important"
