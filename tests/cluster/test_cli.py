"""The `gigacanvas` command end to end, and every refusal a user can meet."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gigacanvas.storage import LatentStore
from tests.helpers import run_cli


def test_render_writes_the_picture_and_store_and_the_png_renders_again(tiny_model, ray_cluster, tmp_path, capsys):
    out = tmp_path / "poster.png"
    code, stdout, err = run_cli(
        capsys, "render", "--prompt", "a poster of a city", "--negative-prompt", "text", "--width", "512",
        "--height", "256", "--steps", "2", "--seed", "3", "--model", tiny_model, "--out", str(out),
        "--actors", "2", "--no-progress", "--compose", "none",  # a plain render (composed ones: test_compose.py)
    )
    assert code == 0, err
    assert "s/step" in stdout and "tiles/s" in stdout and str(out) in stdout
    with Image.open(out) as im:
        assert im.size == (512, 256)
        first = np.asarray(im.convert("RGB"))
        spec = json.loads(im.text["gigacanvas"])
        assert "Steps: 2" in im.text["parameters"] and "Seed: 3" in im.text["parameters"]
    assert spec["prompt"] == "a poster of a city" and spec["tile_size"] == 256
    assert LatentStore(str(tmp_path / "poster.zarr")).read_latent()[1] == 2

    again = tmp_path / "again.png"
    code, _, err = run_cli(capsys, "render", "--spec", str(out), "--out", str(again))  # progress on
    assert code == 0, err
    # stderr is not a terminal here (as in job logs): one plain line per step, no redrawn bars
    steps = [line for line in err.splitlines() if line.startswith("gigacanvas: step ")]
    assert [line.split(",")[0] for line in steps] == ["gigacanvas: step 1/2", "gigacanvas: step 2/2"], err
    assert "\r" not in err
    with Image.open(again) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), first)


def _foreign_store(tmp_path):
    url = str(tmp_path / "other.zarr")
    store = LatentStore(url)
    store.create({"seed": 99}, "0", channels=16, height=8, width=8, scale=8)
    store.write_noise(np.zeros((16, 8, 8), np.float32))
    return ["--store", url]


def _spec_file(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return ["--spec", str(path)]


def _model_folder(tmp_path, kind):
    if kind == "pickle":
        path = tmp_path / "model.ckpt"
        path.write_bytes(b"\x80\x04K\x01.")
    else:
        path = tmp_path / "sd1"
        path.mkdir()
        (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return ["--model", str(path)]


BAD_INPUTS = {
    "width not multiple of 16": (lambda t: ["--width", "1000"], "width 1000 is not a positive multiple of 16; try 1008"),
    "height not multiple of 16": (lambda t: ["--height", "520"], "height 520"),
    "overlap >= tile": (lambda t: ["--tile-size", "256", "--tile-overlap", "256"], "must be smaller than tile_size"),
    "overlap >= native tile": (lambda t: ["--tile-overlap", "512"], "tile_overlap 512 must be smaller than tile_size 256"),
    "steps < 1": (lambda t: ["--steps", "0"], "steps 0 must be at least 1"),
    "missing model": (lambda t: ["--model", str(t / "nope")], "does not exist"),
    "unsupported model folder": (lambda t: _model_folder(t, "sd1"), "StableDiffusionPipeline folder"),
    "pickle model": (lambda t: _model_folder(t, "pickle"), "pickle checkpoint"),
    "unknown store protocol": (lambda t: ["--store", "nope://x/y.zarr"], "unknown protocol 'nope'"),
    "store of another spec": (_foreign_store, "holds a render of another spec"),
    "more actors than the cluster": (lambda t: ["--actors", "100"], "--actors 100 needs 0.5 CPU each"),
    "unknown spec key": (lambda t: _spec_file(t, "colour: red\n"), "unknown key 'colour'; valid keys:"),
    "unreadable spec file": (lambda t: ["--spec", str(t / "missing.yaml")], "is unreadable"),
    "spec file not YAML": (lambda t: _spec_file(t, "prompt: [\n"), "not valid YAML"),
    "unknown flag": (lambda t: ["--colour", "red"], "unrecognized arguments: --colour"),
    "non-integer flag": (lambda t: ["--width", "wide"], "invalid int value"),
    "wrap not an axis": (lambda t: ["--wrap", "z"], "wrap 'z' is not one of x, y, xy, none"),
    "wrap with the blend decode": (lambda t: ["--wrap", "x", "--vae-decode", "blend"], "wrap x needs vae_decode exact or fast"),
    "wrap on a fixed grid no wider than a tile": (lambda t: ["--wrap", "x", "--shift-windows", "off"], "needs shifted windows"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_no_output(case, tiny_model, ray_cluster, tmp_path, capsys):
    extra, message = BAD_INPUTS[case]
    out = tmp_path / "out.png"
    argv = ["render", "--prompt", "x", "--width", "256", "--height", "256", "--steps", "1",
            "--model", tiny_model, "--out", str(out), "--no-progress"] + extra(tmp_path)
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    # notices (which Ray cluster was joined) may come first; the error is one line, the last
    assert all(line.startswith("gigacanvas: ") for line in lines), err
    errors = [line for line in lines if line.startswith("gigacanvas: error: ")]
    assert errors == lines[-1:], err
    assert message in lines[-1]
    assert "Traceback" not in err + stdout
    assert not out.exists()
    assert not (tmp_path / "out.zarr").exists()


def test_a_ray_job_refuses_a_relative_out_and_reads_a_relative_model(tiny_model, tmp_path, capsys, monkeypatch):
    """In a job (Ray's supervisor sets RAY_JOB_CONFIG_JSON_ENV_VAR) the folder is Ray's: a relative
    output would land there; a relative model folder shipped in the working_dir is fine to read."""
    from pathlib import Path

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {}}')
    monkeypatch.chdir(Path(tiny_model).parent)
    model = Path(tiny_model).name
    before = sorted(Path.cwd().iterdir())
    base = ["render", "--prompt", "x", "--width", "256", "--height", "256", "--steps", "1", "--model", model]
    for extra in (["--out", "poster.png"], [], ["--out", str(tmp_path / "p.png"), "--store", "p.zarr"]):
        code, stdout, err = run_cli(capsys, *base, *extra)
        assert code == 2 and stdout == "", err
        assert err.count("\n") == 1 and err.startswith("gigacanvas: error: ") and "is a relative path" in err, err
        assert "pass an absolute --" in err
    assert sorted(Path.cwd().iterdir()) == before and list(tmp_path.iterdir()) == []
    code, stdout, err = run_cli(capsys, *base, "--out", str(tmp_path / "p.png"), "--dry-run")
    assert code == 0 and f"model: {model} " in stdout, err


@pytest.mark.parametrize("content", ["png", "text"])
def test_a_file_that_is_no_gigacanvas_picture_is_never_replaced_even_with_overwrite(tmp_path, capsys, content):
    out = tmp_path / "keep.png"
    if content == "png":
        Image.new("RGB", (8, 8)).save(out)  # someone's own picture
    else:
        out.write_text("important")  # not even a picture
    before = out.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "render", "--prompt", "x", "--width", "256", "--height", "256", "--out", str(out), *extra)
        assert code == 2 and "exists and is not a gigacanvas picture; gigacanvas never replaces it" in err, err
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["render", "--prompt", "x", "--width", "1000"], "width 1000 is not a positive multiple of 16"),
        (["render", "--spec", "/nonexistent/spec.yaml"], "is unreadable"),
        (["paint"], "invalid choice: 'paint'"),
    ],
)
def test_console_errors_never_show_a_traceback(argv, message, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "gigacanvas", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith("gigacanvas: error: ") and message in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_model_builds_a_loadable_folder(tmp_path, capsys):
    from gigacanvas.actors.loading import open_model

    code, out, _ = run_cli(capsys, "demo-model", str(tmp_path / "m"))
    assert code == 0 and "random weights" in out
    assert open_model(str(tmp_path / "m")).latent_channels == 16
    code, _, err = run_cli(capsys, "demo-model", str(tmp_path / "m"))
    assert code == 2 and "not empty" in err


def test_a_png_too_large_for_viewers_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "huge.png"
    code, stdout, err = run_cli(capsys, "render", "--prompt", "x", "--width", "16400", "--height", "1024", "--out", str(out))
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert "a PNG is at most 16384 px a side" in err and "(--out huge.tif)" in err and "huge.ome.zarr" in err
    assert list(tmp_path.iterdir()) == []  # no store, no picture: refused with the spec, before the model or Ray


def test_outputs_by_suffix_and_a_live_preview(tiny_model, ray_cluster, tmp_path, capsys):
    """One render to a BigTIFF with --preview; the finished store then writes a PNG, an OME-Zarr
    export and its own OME-Zarr levels without Ray, and `--spec picture.tif` renders it again."""
    import tifffile
    import zarr

    flags = ["--prompt", "a kite", "--width", "256", "--height", "256", "--steps", "2", "--model", tiny_model,
             "--no-progress", "--store", str(tmp_path / "s.zarr")]
    tif, preview = tmp_path / "p.tif", tmp_path / "live.png"
    code, _, err = run_cli(capsys, "render", *flags, "--out", str(tif), "--preview", str(preview))
    assert code == 0, err
    pixels = tifffile.imread(tif)
    np.testing.assert_array_equal(pixels, LatentStore(str(tmp_path / "s.zarr")).read_image())
    with Image.open(preview) as im:
        assert json.loads(im.text["gigacanvas-preview"])["step"] == 2 and im.size == (256, 256)
    for name in ("p.png", "p.ome.zarr"):
        code, _, err = run_cli(capsys, "render", *flags, "--out", str(tmp_path / name))
        assert code == 0 and "holds the finished picture" in err, err
    with Image.open(tmp_path / "p.png") as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), pixels)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "p.ome.zarr"), mode="r")["0"][...].transpose(1, 2, 0), pixels)
    store = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")  # the store itself opens as OME-Zarr
    assert store.attrs["ome"]["multiscales"][0]["datasets"][0]["path"] == "0"
    code, stdout, err = run_cli(capsys, "render", "--spec", str(tif), "--out", str(tmp_path / "again.tif"), "--dry-run")
    assert code == 0 and "256x256 px" in stdout, err
    code, _, err = run_cli(capsys, "render", *flags[:1], "a boat", *flags[2:], "--out", str(tif))
    assert code == 2 and "holds the picture of another render" in err, err
