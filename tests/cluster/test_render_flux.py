"""Flux.1 renders on the shared local Ray cluster with the tiny Flux model: the pipeline pin,
determinism across actor counts, and the family's defaults and refusals at planning."""

import json

import numpy as np
import pytest
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.cluster.plan import plan
from gigacanvas.storage import LatentStore
from tests.helpers import run_cli

# MULTI_TILE's shape (tests/helpers.py) without its negative prompt, which Flux refuses
FLUX_MULTI_TILE = dict(
    prompt="a harbour at night", width=512, height=320, steps=2, guidance=3.5, seed=5,
    tile_size=256, tile_overlap=64, tile_batch=2, vae_tile_size=256,
)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_one_tile_render_matches_the_flux_pipeline(tiny_flux_model, ray_cluster, tmp_path):
    """One tile covering the whole latent: the render's latent and picture are FluxPipeline's on
    the same prompt and initial noise (packed as the pipeline packs it)."""
    import torch
    from diffusers import FluxPipeline

    from gigacanvas.tiling import initial_noise

    args = dict(prompt="a lighthouse", width=256, height=192, steps=3, guidance=3.5, seed=11)
    result = render(
        RenderSpec(
            model=tiny_flux_model, tile_size=256, vae_tile_size=0, actors=1, precision="fp32",
            store="memory://gc-render-flux/pin.zarr", out=str(tmp_path / "r.png"), **args
        ),
        progress=False,
    )
    assert result.tiles_per_step == 1
    latent, step = LatentStore(result.store).read_latent()
    assert step == 3

    pipe = FluxPipeline.from_pretrained(tiny_flux_model)
    pipe.set_progress_bar_config(disable=True)
    noise = torch.from_numpy(initial_noise(11, 16, 24, 32))[None]
    call = dict(
        prompt=args["prompt"], width=args["width"], height=args["height"], num_inference_steps=args["steps"],
        guidance_scale=args["guidance"], latents=pipe._pack_latents(noise, 1, 16, 24, 32),
    )
    ref_latent = pipe._unpack_latents(pipe(**call, output_type="latent").images, 192, 256, 8)[0].numpy()
    ref_image = pipe(**call, output_type="np").images[0]

    latent_diff = np.abs(latent - ref_latent).max()
    print(f"max abs difference vs FluxPipeline: latent {latent_diff:.2e}")
    assert latent_diff < 1e-4
    # the picture (exact decode in one piece) is the pipeline's, quantised as diffusers quantises
    assert np.abs(_pixels(result.out).astype(int) - (ref_image * 255).round().astype(int)).max() <= 1


@pytest.fixture
def one_band_per_actor(monkeypatch):
    from gigacanvas.cluster import steploop

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)  # a small canvas gets several reducers too


def test_multi_tile_flux_renders_are_the_same_bits_on_one_and_two_actors(
    tiny_flux_model, ray_cluster, tmp_path, one_band_per_actor
):
    outs = {}
    for actors in (1, 2):
        spec = RenderSpec(model=tiny_flux_model, actors=actors, out=str(tmp_path / f"{actors}.png"), **FLUX_MULTI_TILE)
        result = render(spec, progress=False)
        assert result.tiles_per_step > 1 and len(LatentStore(result.store).bands) == actors
        outs[actors] = (_pixels(result.out), LatentStore(result.store).read_latent()[0])
    np.testing.assert_array_equal(outs[1][0], outs[2][0])
    np.testing.assert_array_equal(outs[1][1], outs[2][1])


def _planned(model, tmp_path, **flags):
    return plan(RenderSpec(prompt="a fox", model=model, out=str(tmp_path / "p.png"), **flags)).spec


def test_the_family_defaults_fill_what_the_user_left_out(tiny_flux_model, tiny_schnell_model, tmp_path):
    dev = _planned(tiny_flux_model, tmp_path)
    assert (dev.steps, dev.guidance, dev.tile_size, dev.negative_prompt) == (28, 3.5, 256, "")
    schnell = _planned(tiny_schnell_model, tmp_path)
    assert (schnell.steps, schnell.guidance) == (4, 0.0)
    given = _planned(tiny_flux_model, tmp_path, steps=8, guidance=5.0, tile_size=128)
    assert (given.steps, given.guidance, given.tile_size) == (8, 5.0, 128)
    assert _planned(tiny_schnell_model, tmp_path, guidance=0.0).guidance == 0.0  # the default, as a picture records it


def test_the_defaults_used_are_recorded_in_the_picture(tiny_schnell_model, ray_cluster, tmp_path):
    out = tmp_path / "s.png"
    render(RenderSpec(prompt="a fox", model=tiny_schnell_model, width=128, height=128, actors=1, out=str(out)), progress=False)
    with Image.open(out) as im:
        recorded = json.loads(im.text["gigacanvas"])
    assert (recorded["steps"], recorded["guidance"], recorded["tile_size"]) == (4, 0.0, 256)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--negative-prompt", "blurry"],
            (
                "negative_prompt 'blurry' is not taken by this model: Flux.1 is guidance-distilled and runs no "
                "negative pass (use the prompt alone); leave --negative-prompt out"
            ),
        ),
    ],
)
def test_a_negative_prompt_is_refused_in_one_line(tiny_flux_model, tmp_path, capsys, flags, message):
    code, _, err = run_cli(
        capsys, "render", "--model", tiny_flux_model, "--prompt", "a fox", "--out", str(tmp_path / "p.png"), "--dry-run", *flags
    )
    assert (code, err) == (2, f"gigacanvas: error: {message}\n")


def test_schnell_refuses_a_guidance(tiny_schnell_model, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "render", "--model", tiny_schnell_model, "--prompt", "a fox", "--guidance", "3.5",
        "--out", str(tmp_path / "p.png"), "--dry-run",
    )
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("gigacanvas: error: guidance 3.5 is not taken by this model: Flux.1 [schnell] has no guidance input")


def test_demo_model_builds_a_folder_flux_pipeline_loads(tmp_path, capsys):
    from diffusers import FluxPipeline

    code, out, _ = run_cli(capsys, "demo-model", str(tmp_path / "flux"), "--family", "flux")
    assert code == 0 and "tiny Flux.1-layout model written to" in out
    pipe = FluxPipeline.from_pretrained(tmp_path / "flux")
    assert pipe.transformer.config.guidance_embeds and pipe.transformer.config.in_channels == 64


def test_demo_model_of_an_unknown_family_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "demo-model", str(tmp_path / "m"), "--family", "nope")
    assert (code, err) == (2, "gigacanvas: error: model family 'nope' is unknown; gigacanvas knows sd3, flux, sdxl, simulated\n")
    code, _, err = run_cli(capsys, "demo-model", str(tmp_path / "m"), "--family", "simulated")
    assert code == 2 and "has no tiny model; choose one of sd3, flux, sdxl" in err
    assert not (tmp_path / "m").exists()
