"""SDXL renders on the shared local Ray cluster with the tiny SDXL model: the pipeline pin (epsilon
and v-prediction, Euler from the folder), determinism across actor counts, and the family's
defaults at planning."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.cluster.plan import plan
from gigacanvas.storage import LatentStore
from tests.helpers import MULTI_TILE, run_cli


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_sdxl_v_model(tmp_path_factory) -> str:
    """The tiny SDXL model with a v-prediction scheduler config (the same weights)."""
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.sdxl.tiny import build_tiny_v_pipeline

    quiet_libraries()
    path = tmp_path_factory.mktemp("models") / "tiny-sdxl-v"
    build_tiny_v_pipeline().save_pretrained(path, safe_serialization=True)
    return str(path)


@pytest.mark.parametrize("variant", ["epsilon", "v_prediction", "DDIMScheduler"])
def test_one_tile_render_matches_the_sdxl_pipeline(variant, tiny_sdxl_model, tiny_sdxl_v_model, ray_cluster, tmp_path):
    """One tile covering the whole latent: the render's latent and picture are
    StableDiffusionXLPipeline's on the same prompts and initial noise (which the pipeline scales
    by the scheduler's init_noise_sigma, as the render does); with `--scheduler DDIMScheduler`,
    the pipeline's with DDIM configured from the folder's config (DDIM has no step index: its
    reducers step from the timestep alone)."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionXLPipeline

    from gigacanvas.tiling import initial_noise

    model = tiny_sdxl_v_model if variant == "v_prediction" else tiny_sdxl_model
    chosen = variant if variant.endswith("Scheduler") else None
    args = dict(prompt="a lighthouse", negative_prompt="blurry", width=256, height=192, steps=3, guidance=5.0, seed=11)
    result = render(
        RenderSpec(
            model=model, tile_size=256, vae_tile_size=0, actors=1, precision="fp32", scheduler=chosen,
            store=f"memory://gc-render-sdxl/pin-{variant}.zarr", out=str(tmp_path / "r.png"), **args
        ),
        progress=False,
    )
    assert result.tiles_per_step == 1
    latent, step = LatentStore(result.store).read_latent()
    assert step == 3

    pipe = StableDiffusionXLPipeline.from_pretrained(model, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    if chosen:
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    assert pipe.scheduler.config.prediction_type == ("v_prediction" if variant == "v_prediction" else "epsilon")
    call = dict(
        prompt=args["prompt"], negative_prompt=args["negative_prompt"], width=args["width"], height=args["height"],
        num_inference_steps=args["steps"], guidance_scale=args["guidance"],
        latents=torch.from_numpy(initial_noise(11, 4, 24, 32))[None],
    )
    ref_latent = pipe(**call, output_type="latent").images[0].numpy()
    ref_image = pipe(**call, output_type="np").images[0]

    latent_diff = np.abs(latent - ref_latent).max()
    print(f"max abs difference vs StableDiffusionXLPipeline ({variant}): latent {latent_diff:.2e}")
    assert latent_diff < 1e-4 * max(1.0, np.abs(ref_latent).max())
    # the picture (exact decode in one piece) is the pipeline's, quantised as diffusers quantises
    assert np.abs(_pixels(result.out).astype(int) - (ref_image * 255).round().astype(int)).max() <= 1


@pytest.fixture
def one_band_per_actor(monkeypatch):
    from gigacanvas.cluster import steploop

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)  # a small canvas gets several reducers too


def test_multi_tile_sdxl_renders_are_the_same_bits_on_one_and_two_actors(tiny_sdxl_model, ray_cluster, tmp_path, one_band_per_actor):
    """With `--scheduler EulerAncestralDiscreteScheduler`, the stricter case of the loop (Euler's
    scaled input and first noise, and step noise besides): its step noise is the seed's, keyed by
    position (actors/stepnoise.py), so 1 and 2 actors (and reducers) give the same bits; the
    pipeline draws its own, so the choice is pinned by that and by differing from the folder's
    Euler. The smallest canvas with several tiles; the picture records the sampler."""
    spec = dict(MULTI_TILE, width=384, height=256, vae_tile_size=0)
    latents = {}
    for actors, chosen in ((1, "EulerAncestralDiscreteScheduler"), (2, "EulerAncestralDiscreteScheduler"), (1, None)):
        out = tmp_path / f"{actors}-{chosen}.png"
        result = render(RenderSpec(model=tiny_sdxl_model, actors=actors, out=str(out), scheduler=chosen, **spec), progress=False)
        assert result.tiles_per_step > 1 and len(LatentStore(result.store).bands) == actors
        latents[actors, chosen] = (_pixels(out), LatentStore(result.store).read_latent()[0])
        with Image.open(out) as im:
            assert json.loads(im.text["gigacanvas"])["scheduler"] == chosen
    one, two = latents[1, "EulerAncestralDiscreteScheduler"], latents[2, "EulerAncestralDiscreteScheduler"]
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    # 2 steps: only the first adds noise (the last steps to sigma 0); measured 2% of the latent, far above rounding
    assert np.abs(one[1] - latents[1, None][1]).mean() > 1e-3 * np.abs(one[1]).mean()


@pytest.mark.parametrize(
    "name, why",
    [
        ("Nope", '"Nope" is not a diffusers scheduler'),
        ("DPMSolverMultistepScheduler", "DPMSolverMultistepScheduler keeps earlier steps' state (model_outputs: a multistep solver)"),
        ("KDPM2DiscreteScheduler", "KDPM2DiscreteScheduler calls the model more than once per step"),
        ("FlowMatchEulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler is not made for SDXL models"),
        ("Euler a", "'Euler a' is not a diffusers scheduler class name"),
    ],
)
def test_a_scheduler_sdxl_does_not_allow_exits_2_in_one_line(name, why, tiny_sdxl_model, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "render", "--model", tiny_sdxl_model, "--prompt", "a fox", "--scheduler", name, "--out", str(tmp_path / "p.png"), "--dry-run"
    )
    assert code == 2 and err.count("\n") == 1 and f"error: scheduler {why}" in err, err
    if "class name" not in why:
        assert err.rstrip().endswith("SDXL allows EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DDIMScheduler, DDPMScheduler, LCMScheduler or TCDScheduler")


def _planned(model, tmp_path, **flags):
    return plan(RenderSpec(prompt="a fox", model=model, out=str(tmp_path / "p.png"), **flags)).spec


def test_the_family_defaults_fill_what_the_user_left_out(tiny_sdxl_model, tmp_path):
    spec = _planned(tiny_sdxl_model, tmp_path)
    assert (spec.steps, spec.guidance, spec.tile_size) == (50, 5.0, 256)
    given = _planned(tiny_sdxl_model, tmp_path, steps=8, guidance=7.0, tile_size=128, negative_prompt="blurry")
    assert (given.steps, given.guidance, given.tile_size, given.negative_prompt) == (8, 7.0, 128, "blurry")


def test_the_defaults_used_are_recorded_in_the_picture(tiny_sdxl_model, ray_cluster, tmp_path):
    out = tmp_path / "s.png"
    spec = RenderSpec(prompt="a fox", model=tiny_sdxl_model, width=128, height=128, actors=1, out=str(out))
    render(spec, progress=False)
    with Image.open(out) as im:
        recorded = json.loads(im.text["gigacanvas"])
    assert (recorded["steps"], recorded["guidance"], recorded["tile_size"]) == (50, 5.0, 256)


def test_a_multistep_scheduler_is_refused_in_one_line(tiny_sdxl_model, tmp_path, capsys):
    copy = tmp_path / "m"
    shutil.copytree(tiny_sdxl_model, copy)
    path = copy / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": "DPMSolverMultistepScheduler"}))
    code, _, err = run_cli(capsys, "render", "--model", str(copy), "--prompt", "a fox", "--out", str(tmp_path / "p.png"), "--dry-run")
    assert code == 2 and err.count("\n") == 1
    assert "DPMSolverMultistepScheduler keeps earlier steps' state (model_outputs" in err
    assert err.rstrip().endswith("so pass --scheduler or set a single-step sampler such as EulerDiscreteScheduler")
    # a chosen sampler replaces the folder's: the way around it
    args = ("render", "--model", str(copy), "--prompt", "a fox", "--out", str(tmp_path / "p.png"), "--dry-run")
    code, out, _ = run_cli(capsys, *args, "--scheduler", "EulerDiscreteScheduler")
    assert code == 0 and "plan for" in out


def test_demo_model_builds_a_folder_the_sdxl_pipeline_loads(tmp_path, capsys):
    from diffusers import StableDiffusionXLPipeline

    code, out, _ = run_cli(capsys, "demo-model", str(tmp_path / "sdxl"), "--family", "sdxl")
    assert code == 0 and "tiny SDXL-layout model written to" in out
    pipe = StableDiffusionXLPipeline.from_pretrained(tmp_path / "sdxl", add_watermarker=False)
    assert pipe.unet.config.addition_embed_type == "text_time" and pipe.vae.config.scaling_factor == 0.13025
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_a_composed_sdxl_render_refines_from_the_composition_noised_by_add_noise(tiny_sdxl_model, ray_cluster, tmp_path):
    """A refinement with a non-flow sampler: the start latent is Euler's `add_noise` of the
    composition's encode (latent + sigma * noise, as StableDiffusionXLImg2ImgPipeline), not the
    flow-matching mix, and the refinement runs from there."""
    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster.plan import make_scheduler
    from gigacanvas.tiling import initial_noise
    from gigacanvas.tiling.grid import Window

    spec = RenderSpec(
        model=tiny_sdxl_model, actors=1, store="memory://gc-render-sdxl/compose.zarr", out=str(tmp_path / "c.png"),
        prompt="a lighthouse on a cliff, poster", negative_prompt="blurry", width=512, height=256, steps=3,
        guidance=4.5, seed=7, tile_size=256, tile_batch=2, vae_tile_size=256, strength=0.6,
    )
    result = render(spec, progress=False)
    assert result.start_step == 1 and result.steps_run == 2 and _pixels(result.out).shape == (256, 512, 3)
    (stage_url,) = result.stages
    sigma = float(make_scheduler(open_model(tiny_sdxl_model), 3, 32, 64).sigmas[1])
    encoded = LatentStore(result.store).read_noise() - sigma * initial_noise(7, 4, 32, 64)
    worker = Worker(open_model(tiny_sdxl_model))
    worker.load("fp32")
    whole = worker.encode_tile(LatentStore(stage_url).read_image(), (256, 512), Window(0, 0, 32, 64), 0)
    assert np.abs(encoded - whole).mean() / np.abs(whole).mean() < 0.1
