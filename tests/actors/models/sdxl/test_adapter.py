"""The SDXL adapter on its own (no Ray): sizes and defaults, size conditioning, the VAE's dtype,
the folder's scheduler, FP8 loading, and one whole tile against StableDiffusionXLPipeline."""

import numpy as np
import pytest
import torch

from gigacanvas.actors.loading import load_adapter, open_model
from gigacanvas.actors.models.sdxl.adapter import time_ids
from gigacanvas.tiling import initial_noise


def test_the_model_info_is_read_from_the_configs(tiny_sdxl_model):
    info = open_model(tiny_sdxl_model)
    assert (info.family, info.latent_channels, info.vae_scale_factor, info.patch_size) == ("sdxl", 4, 8, 2)
    assert (info.native_tile_px, info.max_tile_px, info.align_px) == (256, None, 16)
    assert dict(info.defaults) == {"guidance": 5.0, "steps": 50} and info.refused == ()


def test_each_tile_is_conditioned_as_a_whole_picture_of_its_size(tiny_sdxl_model):
    """The ids the pipeline makes for a picture of the tile's size by default: original = target =
    (height, width), crop (0, 0); never the canvas's size or the tile's offset."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model, add_watermarker=False)
    ref = pipe._get_add_time_ids((192, 256), (0, 0), (192, 256), torch.float32, pipe.text_encoder_2.config.projection_dim)
    assert ref.tolist() == [time_ids(192, 256)] == [[192, 256, 0, 0, 192, 256]]


def test_the_scheduler_is_the_folders_euler(tiny_sdxl_model):
    adapter = load_adapter(open_model(tiny_sdxl_model), "cpu")
    scheduler = adapter.make_scheduler(4, 32, 32)
    assert type(scheduler).__name__ == "EulerDiscreteScheduler" and len(scheduler.timesteps) == 4
    assert scheduler.config.prediction_type == "epsilon" and float(scheduler.init_noise_sigma) > 1


@pytest.mark.parametrize(
    "precision, force_upcast, want",
    [("fp16", True, torch.float32), ("fp16", False, torch.float16), ("bf16", True, torch.bfloat16), ("fp32", True, torch.float32)],
)
def test_the_vae_runs_in_fp32_where_fp16_would_overflow(tiny_sdxl_model, precision, force_upcast, want):
    adapter = load_adapter(open_model(tiny_sdxl_model), "cpu", precision)
    assert adapter.vae_dtype({"force_upcast": force_upcast}) == want


def test_fp8_stores_the_unets_blocks_in_fp8_and_keeps_its_ends(tiny_sdxl_model):
    adapter = load_adapter(open_model(tiny_sdxl_model), "cpu", "fp8")
    unet = adapter._load("transformer")
    assert unet.conv_in.weight.dtype == torch.float32 and unet.add_embedding.linear_1.weight.dtype == torch.float32
    assert unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn


def test_one_whole_tile_equals_the_pipeline(tiny_sdxl_model):
    """The adapter's calls, with the loop's noise scaling, model-input scaling and Euler step,
    give the pipeline's latent with CFG and a negative prompt."""
    from diffusers import StableDiffusionXLPipeline

    h, w, steps, guidance = 24, 32, 3, 5.0
    noise = torch.from_numpy(initial_noise(11, 4, h, w))[None]
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        prompt="a lighthouse", negative_prompt="blurry", height=h * 8, width=w * 8, num_inference_steps=steps,
        guidance_scale=guidance, latents=noise, output_type="latent",
    ).images

    adapter = load_adapter(open_model(tiny_sdxl_model), "cpu")
    cond = adapter.encode_prompt("a lighthouse", "blurry", guidance)
    scheduler = adapter.make_scheduler(steps, h, w)
    latent = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(latent, t)
        out = torch.from_numpy(adapter.predict(x.numpy(), float(t), cond, guidance))
        latent = scheduler.step(out, t, latent, return_dict=False)[0]
    assert np.abs(latent.numpy() - ref.numpy()).max() < 1e-4
