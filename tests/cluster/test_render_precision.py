"""Precision modes and FP8 files, end to end through `render` on the tiny model (CPU)."""

import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from gigacanvas import RenderSpec, UsageError, render
from gigacanvas.actors.convert import convert_transformer
from gigacanvas.actors.precision import probe, resolve_precision
from gigacanvas.storage import LatentStore

ARGS = dict(prompt="a red fox in snow", negative_prompt="blurry", width=256, height=256, steps=2, guidance=4.5, seed=2, actors=1)


def _memory(name: str) -> str:
    """A memory:// store: its band reducer runs in this process, so a render starts one actor, not two.

    For renders that check pixels and precision, which do not depend on where the latent is kept.
    """
    return f"memory://gc-precision/{name}.zarr"


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def _psnr(a, b) -> float:
    mse = ((a - b) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def fp32_render(tiny_model, ray_cluster, tmp_path_factory):
    """The fp32 reference: its picture for the PSNR checks, its store and picture for the resume check."""
    out = tmp_path_factory.mktemp("fp32") / "ref.png"
    result = render(RenderSpec(model=tiny_model, precision="fp32", store=_memory("fp32"), out=str(out), **ARGS), progress=False)
    assert result.precision == "fp32"
    return result


@pytest.fixture(scope="module")
def fp32_pixels(fp32_render):
    return _pixels(fp32_render.out)


@pytest.mark.parametrize(
    "requested, runs, min_psnr, note",
    [
        ("auto", "auto", 25, None),
        ("fp8", "fp8", 30, None),
        ("fp8-compute", "fp8", 30, "precision fp8-compute is not available (fp8-compute: no CUDA device"),
        ("bf16", "bf16", 25, None),
        ("fp16", "fp16", 25, None),
    ],
)
def test_every_mode_runs_or_falls_back_with_its_reason(requested, runs, min_psnr, note, tiny_model, fp32_pixels, tmp_path):
    notes = []
    out = tmp_path / "p.png"
    if runs == "auto":  # this machine's fastest: bf16 on CPUs with native bf16, else fp32
        runs = resolve_precision("auto", [probe()])[0]
    spec = RenderSpec(model=tiny_model, precision=requested, store=_memory(f"mode-{requested}"), out=str(out), **ARGS)
    result = render(spec, progress=False, notify=notes.append)
    assert result.precision == runs
    if note:
        assert any(n.startswith("gigacanvas: " + note) and n.endswith(f"using {runs}") for n in notes), notes
    else:
        assert not any("not available" in n for n in notes)
    psnr = _psnr(_pixels(out), fp32_pixels)
    print(f"{requested} -> {runs}: PSNR vs fp32 {psnr:.1f} dB")
    assert psnr >= min_psnr
    with Image.open(out) as im:
        assert f"Precision: {runs}" in im.text["parameters"]


@pytest.mark.parametrize("scale_name", ["weight_scale", "scale_weight"])
def test_scaled_fp8_files_render_like_the_unscaled_model(scale_name, tiny_model, fp32_pixels, tmp_path):
    fp8 = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8", scale_name)
    out = tmp_path / "p.png"
    spec = RenderSpec(model=str(fp8), base_model=tiny_model, precision="fp8", strict_precision=True,
                      store=_memory(f"scaled-{scale_name}"), out=str(out), **ARGS)
    assert render(spec, progress=False).precision == "fp8"
    psnr = _psnr(_pixels(out), fp32_pixels)
    print(f"{scale_name}: PSNR vs fp32 {psnr:.1f} dB")
    assert psnr >= 30


def test_a_loader_that_misses_the_scale_would_fail_that_check(tiny_model, fp32_pixels, tmp_path):
    fp8 = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8", "scale_weight")
    tensors = {k: v for k, v in load_file(str(fp8)).items() if not k.endswith("scale_weight")}
    save_file(tensors, str(tmp_path / "lost.safetensors"))
    out = tmp_path / "p.png"
    spec = RenderSpec(model=str(tmp_path / "lost.safetensors"), base_model=tiny_model, precision="fp8",
                      store=_memory("lost-scale"), out=str(out), **ARGS)
    render(spec, progress=False)
    assert _psnr(_pixels(out), fp32_pixels) < 20


@pytest.mark.parametrize(
    "model, precision, message",
    [
        ("folder", "fp8-compute", "precision fp8-compute is not available"),
        ("folder", "fp8", "stores fp32 weights, not float8_e4m3fn, and --strict-precision is set"),
    ],
)
def test_strict_precision_refuses_before_writing_anything(model, precision, message, tiny_model, ray_cluster, tmp_path):
    out = tmp_path / "p.png"
    spec = RenderSpec(model=tiny_model, precision=precision, strict_precision=True, out=str(out), **ARGS)
    with pytest.raises(UsageError, match=message):
        render(spec, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_another_precision(tiny_model, fp32_render, tmp_path):
    """A copy of the fp32 reference's picture, then its store alone, asked for in bf16: each refuses; the store stays whole."""
    out = tmp_path / "p.png"
    shutil.copyfile(fp32_render.out, out)
    bf16 = RenderSpec(model=tiny_model, precision="bf16", store=fp32_render.store, out=str(out), **ARGS)
    with pytest.raises(UsageError, match="holds the picture of another render"):  # the picture was fp32's
        render(bf16, progress=False)
    out.unlink()  # the picture gone, the store still refuses to be resumed in another precision
    with pytest.raises(UsageError, match="was rendered in fp32 but --precision bf16 runs bf16"):
        render(bf16, progress=False)
    assert LatentStore(fp32_render.store).read_latent()[1] == ARGS["steps"]


def test_a_file_of_another_architecture_is_refused_before_anything_is_written(tiny_model, ray_cluster, tmp_path):
    fp8 = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8")
    tensors = load_file(str(fp8))
    tensors["proj_out.weight"] = tensors["proj_out.weight"][:-1]  # one output row short
    save_file(tensors, str(tmp_path / "other.safetensors"))
    out = tmp_path / "p.png"
    spec = RenderSpec(model=str(tmp_path / "other.safetensors"), base_model=tiny_model, out=str(out), **ARGS)
    with pytest.raises(UsageError, match="does not fit the SD3 transformer config .*size mismatch for proj_out.weight"):
        render(spec, progress=False)
    assert not out.exists() and not (tmp_path / "p.zarr").exists()
