"""`gigacanvas upscale` (cluster/upscale.py) on the shared Ray cluster with the tiny model.

SOURCE is a 64 x 48 RGBA picture (random colour, an alpha ramp left to right); at --scale 4 the
canvas is 256 x 192 px, tiles of 128 px (the tiny model's native 256 px tile would not fit), and
strength 0.5 of 3 steps starts the refinement at step 1 (diffusers' t_start = int(3 - 1.5)).
"""

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from gigacanvas import render
from gigacanvas.cluster.upscale import canvas_size, upscale_spec
from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.outputs import read_output_spec
from tests.helpers import run_cli

FLAGS = dict(prompt="a fox in the snow", seed=3, steps=3, strength=0.5, tile_size=128, tile_batch=2)


def _source() -> np.ndarray:
    rgba = np.random.default_rng(0).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 64).astype(np.uint8)[None]
    return rgba


def _pixels(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        return im.mode, np.asarray(im)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "fox.png"
    Image.fromarray(_source(), "RGBA").save(path)
    return path


@pytest.fixture(scope="module")
def kept(picture, tiny_model, ray_cluster, tmp_path_factory):
    """SOURCE upscaled 4x on one actor, alpha kept (the default), its store in this process."""
    out = tmp_path_factory.mktemp("kept") / "up.png"
    spec = upscale_spec(
        str(picture), 4.0, None, None, model=tiny_model, actors=1, store="memory://gc-upscale/kept.zarr", out=str(out), **FLAGS
    )
    result = render(spec, progress=False)
    return result, _pixels(out)


def test_an_upscale_has_the_canvas_size_the_kept_alpha_and_carries_its_spec(kept, picture):
    result, (mode, pixels) = kept
    assert mode == "RGBA" and pixels.shape == (192, 256, 4)
    assert result.start_step == 1 and result.steps_run == 2
    with Image.fromarray(_source()[..., 3], "L") as alpha:  # the source's alpha, upscaled whole by LANCZOS
        np.testing.assert_array_equal(pixels[..., 3], np.asarray(alpha.resize((256, 192), Image.LANCZOS)))
    spec = read_output_spec(result.out)
    assert spec["source"] == "sha256:" + hashlib.sha256(picture.read_bytes()).hexdigest()
    assert (spec["alpha"], spec["strength"], spec["width"], spec["height"]) == ("keep", 0.5, 256, 192)
    assert "image" not in spec and "compose" not in {k for k, v in spec.items() if v not in (None, "none")}
    store = LatentStore(result.store)
    assert store.start_step == 1 and store.attrs()["spec"]["source"] == spec["source"]
    assert store.source_alpha().shape == (48, 64)


def test_dropping_alpha_on_two_actors_gives_the_same_colour_opaque(kept, picture, tiny_model, tmp_path, monkeypatch):
    """The model sees the same colour (over white) whatever `alpha` says: two actors, two bands,
    alpha dropped, give the kept upscale's colour bit for bit, and no alpha."""
    from gigacanvas.cluster import steploop

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)
    spec = upscale_spec(str(picture), 4.0, "drop", None, model=tiny_model, actors=2, out=str(tmp_path / "d.png"), **FLAGS)
    two = render(spec, progress=False)
    assert two.actors == 2 and len(LatentStore(two.store).bands) == 2
    mode, pixels = _pixels(two.out)
    assert mode == "RGB" and read_output_spec(two.out)["alpha"] == "drop"
    np.testing.assert_array_equal(pixels, kept[1][1][..., :3])
    assert LatentStore(two.store).source_alpha() is None


def test_a_killed_upscale_resumes_from_its_store_alone_and_another_picture_is_another_store(
    kept, picture, tiny_model, tmp_path, monkeypatch, capsys
):
    from gigacanvas.cluster import render as render_module

    copy = tmp_path / "copy.png"
    shutil.copy(picture, copy)
    denoise = render_module.denoise

    def stop_after_step_2(store, *args, on_step, **kwargs):
        def on_step_then_fail(done):
            on_step(done)
            if done == 2:
                raise RenderError("simulated driver loss")

        return denoise(store, *args, on_step=on_step_then_fail, **kwargs)

    monkeypatch.setattr(render_module, "denoise", stop_after_step_2)
    code, _, err = run_cli(
        capsys, "upscale", str(copy), "--scale", "4", "--model", tiny_model, "--actors", "1", "--out",
        str(tmp_path / "r.png"), "--no-progress", *_flags(FLAGS),
    )
    assert code == 1 and "simulated driver loss" in err and "gigacanvas resume --store" in err, err
    monkeypatch.undo()
    store = str(tmp_path / "r.zarr")
    assert LatentStore(store).read_latent()[1] == 2 and not (tmp_path / "r.png").exists()

    copy.unlink()  # past the initial latent, the store holds all a resume needs (the alpha included)
    code, _, err = run_cli(capsys, "resume", "--store", store, "--no-progress")
    assert code == 0, err
    assert "resuming" in err and "at step 2 of 3" in err
    mode, pixels = _pixels(tmp_path / "r.png")
    assert mode == "RGBA"
    np.testing.assert_array_equal(pixels, kept[1][1])

    # other bytes at the same path: another source, so the store is another render's
    changed = _source()
    changed[0, 0, 0] ^= 1
    Image.fromarray(changed, "RGBA").save(copy)
    code, _, err = run_cli(
        capsys, "upscale", str(copy), "--scale", "4", "--model", tiny_model, "--out", str(tmp_path / "r.png"),
        "--dry-run", *_flags(FLAGS),
    )
    assert code == 2 and err.count("\n") == 1 and "another render" in err, err


def _flags(values: dict) -> list[str]:
    return [item for name, value in values.items() for item in (f"--{name.replace('_', '-')}", str(value))]


def test_the_canvas_size_rounds_a_scale_to_multiples_of_16_and_follows_the_aspect():
    assert canvas_size(64, 48, 4.0, None, None) == (256, 192)
    assert canvas_size(100, 75, 2.0, None, None) == (208, 144)  # 200 -> 208 (a tie, upwards), 150 -> 144 (nearest)
    assert canvas_size(64, 48, None, 512, None) == (512, 384)
    assert canvas_size(64, 48, None, None, 96) == (128, 96)
    assert canvas_size(64, 48, None, 320, 160) == (320, 160)  # as given, aspect and all


def test_a_picture_without_transparency_records_no_alpha(tmp_path, tiny_model):
    path = tmp_path / "fox.jpg"
    Image.fromarray(_source()[..., :3], "RGB").save(path, quality=95)
    spec = upscale_spec(str(path), 4.0, "keep", None, model=tiny_model, out=str(tmp_path / "x.tif"), **FLAGS)
    assert spec.alpha is None and spec.source.startswith("sha256:") and spec.image == str(path)
    assert "alpha" not in spec.content() and spec.content()["source"] == spec.source


def _bad_pictures(tmp_path) -> dict[str, str]:
    good = tmp_path / "good.png"
    Image.fromarray(_source(), "RGBA").save(good)
    made = {"good": good}
    (tmp_path / "text.png").write_text("not a picture at all\n")
    made["corrupt"] = tmp_path / "text.png"
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    made["truncated"] = tmp_path / "cut.png"
    Image.fromarray(_source()[..., :3], "RGB").save(tmp_path / "anim.gif")
    made["gif"] = tmp_path / "anim.gif"
    Image.fromarray(np.full((48, 64), 40000, np.uint16)).save(tmp_path / "deep.png")
    made["16-bit"] = tmp_path / "deep.png"
    made["missing"] = tmp_path / "nowhere.png"
    return {k: str(v) for k, v in made.items()}


@pytest.mark.parametrize(
    "which, flags, limit, message",
    [
        ("missing", ["--scale", "4"], None, "nowhere.png is unreadable (FileNotFoundError)"),
        ("corrupt", ["--scale", "4"], None, "is not a picture upscale can read"),
        ("truncated", ["--scale", "4"], None, "is damaged"),
        ("gif", ["--scale", "4"], None, "is a GIF picture; upscale reads PNG, JPEG, TIFF and WebP"),
        ("16-bit", ["--scale", "4"], None, "has mode I;16; upscale reads 8-bit grey, palette, RGB(A), CMYK or YCbCr"),
        ("good", ["--scale", "4"], 2000, "is 64x48 pixels, over the 2,000 (a 44x44 picture) that upscale accepts"),
        ("good", ["--scale", "4"], 1000, "is over 2,000 pixels, over the 1,000 (a 31x31 picture) that upscale accepts"),
        ("good", ["--scale", "1"], None, "canvas 64x48 px is smaller than a tile (128 px); pass a larger --scale"),
        ("good", ["--scale", "4", "--tile-size", "256"], None, "canvas 256x192 px is smaller than a tile (256 px)"),
        ("good", ["--scale", "0"], None, "scale 0.0 must be a number above 0 and at most 64"),
        ("good", ["--scale", "4", "--strength", "0"], None, "strength 0.0 must be a number above 0 and at most 1"),
        ("good", ["--scale", "4", "--strength", "1.5"], None, "strength 1.5 must be a number above 0 and at most 1"),
        ("good", ["--scale", "4", "--steps", "2"], None, "strength 0.6 of 2 steps starts the refinement at step 0, from "
         "pure noise: the picture would not count; pass --steps 3 or more, or --strength 0.5 or less"),
        ("good", ["--width", "250"], None, "width 250 is not a positive multiple of 16; try 256"),
        ("good", ["--scale", "4", "--width", "256"], None, "pass either --scale or --width/--height, not both"),
        ("good", [], None, "pass --scale (e.g. 4) or --width/--height"),
        ("good", ["--scale", "4", "--alpha", "maybe"], None, "alpha 'maybe' is not one of keep, drop"),
        ("good", ["--scale", "4", "--out", "x.tif"], None, "alpha keep writes a PNG with transparency"),
        ("good", ["--scale", "4", "--compose", "1"], None, "unrecognized arguments: --compose 1"),
    ],
)
def test_bad_upscale_input_is_one_line_and_exit_2(which, flags, limit, message, tiny_model, tmp_path, capsys, monkeypatch):
    from gigacanvas.storage import source

    if limit is not None:
        monkeypatch.setattr(source, "MAX_SOURCE_PIXELS", limit)
    image = _bad_pictures(tmp_path)[which]
    out = [] if "--out" in flags else ["--out", str(tmp_path / "x.png")]
    code, _, err = run_cli(
        capsys, "upscale", image, "--prompt", "x", "--model", tiny_model, "--tile-size", "128", *out, "--dry-run", *flags,
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("gigacanvas: error: ") and message in err, err
    assert not (tmp_path / "x.zarr").exists()


def test_a_spec_without_its_picture_is_refused(tiny_model, tmp_path, picture):
    """`render --spec up.png` of an upscale's picture has no picture to start from: one line."""
    from gigacanvas.cluster.plan import plan

    spec = upscale_spec(str(picture), 4.0, None, None, model=tiny_model, out=str(tmp_path / "x.png"), **FLAGS)
    with pytest.raises(UsageError, match="names no image; run gigacanvas upscale IMAGE"):
        plan(spec.replace(image=None))


def test_an_upscale_picture_repeats_as_a_spec_of_the_same_picture_only(kept, picture, tiny_model, tmp_path, capsys):
    out = kept[0].out
    code, stdout, err = run_cli(
        capsys, "upscale", str(picture), "--spec", out, "--model", tiny_model, "--out", str(tmp_path / "a.png"), "--dry-run"
    )
    assert code == 0 and "plan for 256x192 px" in stdout and "refined from step 1 of 3 (strength 0.5)" in stdout, err
    other = tmp_path / "other.png"
    Image.fromarray(_source()[::-1].copy(), "RGBA").save(other)
    code, _, err = run_cli(
        capsys, "upscale", str(other), "--spec", out, "--model", tiny_model, "--out", str(tmp_path / "b.png"), "--dry-run"
    )
    assert code == 2 and err.count("\n") == 1 and "is the upscale of another picture" in err, err


@pytest.mark.parametrize("spelling", ["same", "symlink", "dotted"])
def test_an_upscale_never_writes_over_its_own_picture_even_with_overwrite(spelling, tiny_model, tmp_path, capsys):
    """A gigacanvas picture upscaled with --out naming itself (--overwrite lets another render's
    picture be replaced) would lose the user's picture: refused in one line, the file untouched."""
    from gigacanvas.storage.picture import write_png

    picture = tmp_path / "poster.png"
    write_png(picture, _source()[..., :3].copy(), {"prompt": "a poster", "width": 64, "height": 48}, "a poster")
    before = picture.read_bytes()
    (tmp_path / "link.png").symlink_to(picture)
    out = {"same": str(picture), "symlink": str(tmp_path / "link.png"), "dotted": f"{tmp_path}/./poster.png"}[spelling]
    code, _, err = run_cli(
        capsys, "upscale", str(picture), "--scale", "4", "--prompt", "x", "--model", tiny_model, "--tile-size", "128",
        "--out", out, "--store", str(tmp_path / "s.zarr"), "--overwrite", "--dry-run",
    )
    assert code == 2 and err.count("\n") == 1 and "is the picture being upscaled" in err, err
    assert picture.read_bytes() == before and not (tmp_path / "s.zarr").exists()


def test_an_upscale_on_a_torus_runs_end_to_end(picture, tiny_model, ray_cluster, tmp_path):
    """`--wrap xy`: the upscale, the encode (one piece, padded circularly both ways), the step loop
    and the decode all wrap; the smallest run (32 x 24 px to 128 x 96 px, one 96 px tile, one step)."""
    small = tmp_path / "small.png"
    Image.fromarray(_source()[::2, ::2].copy(), "RGBA").save(small)
    flags = {**FLAGS, "steps": 2, "tile_size": 96}  # strength 0.5 of 2 steps: from step 1, one step
    spec = upscale_spec(
        str(small), 4.0, None, None, model=tiny_model, actors=1, store="memory://gc-upscale/torus.zarr",
        out=str(tmp_path / "t.png"), wrap="xy", **flags,
    )
    result = render(spec, progress=False)
    mode, pixels = _pixels(result.out)
    assert mode == "RGBA" and pixels.shape == (96, 128, 4)
    assert result.start_step == 1 and result.steps_run == 1
    assert read_output_spec(result.out)["wrap"] == "xy" and LatentStore(result.store).attrs()["spec"]["wrap"] == "xy"


def test_an_upscaler_upscales_the_colour_on_the_actors_and_leaves_the_alpha_to_lanczos(
    kept, picture, tiny_model, tmp_path, capsys, monkeypatch
):
    """`upscale --upscaler` (a tiny random-weight 2x RealESRGAN Compact) on two actors, two bands:
    the colour differs from the kept upscale's (the same spec but the upscaler), the alpha is the
    kept one bit for bit (LANCZOS alone), and the picture and store record the model's fingerprint,
    never its path. (Across actor counts: test_compose.py's encode on one and two workers.)

    The render is stopped after a step and resumed with the model file gone: past its first
    latent a store needs no upscaler; a finished store writes its picture again with another model
    at its path; `resume --upscaler` says where the same model is now."""
    from gigacanvas.cluster import steploop
    from tests.actors.upscalerfiles import compact
    from tests.helpers import fail_after_step

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)
    model = compact(tmp_path / "2x.safetensors")
    out = tmp_path / "up.png"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FLAGS.items()]
    fail_after_step(monkeypatch, 2, "simulated driver loss")
    code, _, err = run_cli(
        capsys, "upscale", str(picture), "--scale", "4", "--model", tiny_model, "--actors", "2", "--upscaler", model,
        "--out", str(out), "--no-progress", *flags,
    )
    assert code == 1 and "simulated driver loss" in err, err
    monkeypatch.undo()
    monkeypatch.setattr(steploop, "BAND_BYTES", 1)
    moved = tmp_path / "moved.safetensors"
    shutil.move(model, moved)
    store = str(tmp_path / "up.zarr")
    code, _, err = run_cli(capsys, "resume", "--store", store, "--no-progress")
    assert code == 0 and "at step 2 of 3" in err, err
    mode, pixels = _pixels(out)
    assert mode == "RGBA" and pixels.shape == (192, 256, 4)
    np.testing.assert_array_equal(pixels[..., 3], kept[1][1][..., 3])
    assert np.abs(pixels[..., :3].astype(int) - kept[1][1][..., :3]).mean() > 1
    spec = read_output_spec(out)
    assert len(spec["upscaler_fingerprint"]) == 16 and "upscaler" not in spec
    assert LatentStore(str(tmp_path / "up.zarr")).attrs()["spec"]["upscaler_fingerprint"] == spec["upscaler_fingerprint"]
    out.unlink()
    compact(model, upscale=4)  # another model where the render's was: not used, so not in the way
    code, _, err = run_cli(capsys, "resume", "--store", store, "--no-progress")
    assert code == 0 and "holds the finished picture" in err, err
    np.testing.assert_array_equal(_pixels(out)[1], pixels)
    code, stdout, err = run_cli(capsys, "resume", "--store", store, "--upscaler", str(moved), "--dry-run")
    assert code == 0 and "upscaler: RealESRGAN Compact 2x (moved.safetensors" in stdout, err
