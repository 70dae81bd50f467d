"""The Flux.1 adapter on its own (no Ray): packing, positions, the tile's shift, and one whole
tile against diffusers' FluxPipeline."""

import numpy as np
import pytest
import torch

from gigacanvas.actors.loading import load_adapter, open_model
from gigacanvas.actors.models.flux.adapter import image_ids, pack, unpack
from gigacanvas.tiling import initial_noise


def test_pack_is_the_pipelines_and_unpack_inverts_it():
    from diffusers import FluxPipeline

    x = torch.randn(2, 16, 6, 10)
    packed = pack(x)
    assert torch.equal(packed, FluxPipeline._pack_latents(x, 2, 16, 6, 10))
    assert torch.equal(unpack(packed, 6, 10), x)
    assert torch.equal(unpack(packed, 6, 10), FluxPipeline._unpack_latents(packed, 6 * 8, 10 * 8, 8))


def test_positions_are_tile_local_and_the_pipelines():
    from diffusers import FluxPipeline

    ids = image_ids(6, 10)
    assert torch.equal(ids, FluxPipeline._prepare_latent_image_ids(1, 3, 5, "cpu", torch.float32))
    assert ids[:, 1:].min() == 0 and ids[:, 1].max() == 2 and ids[:, 2].max() == 4


def test_the_model_info_is_read_from_the_configs(tiny_flux_model, tiny_schnell_model):
    dev, schnell = open_model(tiny_flux_model), open_model(tiny_schnell_model)
    assert (dev.family, dev.latent_channels, dev.vae_scale_factor, dev.patch_size) == ("flux", 16, 8, 2)
    assert (dev.native_tile_px, dev.max_tile_px, dev.align_px) == (256, None, 16)
    assert dict(dev.defaults) == {"guidance": 3.5, "steps": 28}
    assert dict(schnell.defaults) == {"guidance": 0.0, "steps": 4}
    assert [name for name, _ in dev.refused] == ["negative_prompt"]
    assert [name for name, _ in schnell.refused] == ["negative_prompt", "guidance"]


def test_the_shift_follows_the_tile_not_the_canvas(tiny_flux_model):
    """The schedule for 64x64 tiles is the same whatever canvas they tile, and a larger tile's
    schedule is shifted further towards high noise (more tokens: larger mu)."""
    adapter = load_adapter(open_model(tiny_flux_model), "cpu")
    small, large = adapter.make_scheduler(4, 32, 32), adapter.make_scheduler(4, 128, 128)
    assert torch.all(large.sigmas[1:-1] > small.sigmas[1:-1])
    assert large.sigmas[0] == small.sigmas[0] == 1


def test_one_whole_tile_equals_the_pipeline(tiny_flux_model):
    """The adapter's calls, stepped by its own scheduler on the unpacked latent, give the
    pipeline's latent on the packed one: bit for bit on the CPU in fp32."""
    from diffusers import FluxPipeline

    h, w, steps = 24, 32, 3
    noise = torch.from_numpy(initial_noise(11, 16, h, w))[None]
    pipe = FluxPipeline.from_pretrained(tiny_flux_model)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        prompt="a lighthouse", height=h * 8, width=w * 8, num_inference_steps=steps, guidance_scale=3.5,
        latents=pipe._pack_latents(noise, 1, 16, h, w), output_type="latent",
    ).images
    ref = unpack(ref, h, w)

    adapter = load_adapter(open_model(tiny_flux_model), "cpu", "fp32")
    scheduler = adapter.make_scheduler(steps, h, w)
    cond = adapter.encode_prompt("a lighthouse", "", 3.5)
    x = noise
    for t in scheduler.timesteps:
        v = adapter.predict(x.numpy(), float(t), cond, 3.5)
        x = scheduler.step(torch.from_numpy(v), t, x, return_dict=False)[0]
    np.testing.assert_allclose(x.numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_guidance_is_an_input_of_dev_and_absent_from_schnell(tiny_flux_model, tiny_schnell_model):
    x = initial_noise(3, 16, 16, 16)[None]
    dev = load_adapter(open_model(tiny_flux_model), "cpu")
    cond = dev.encode_prompt("a fox", "", 3.5)
    assert not np.array_equal(dev.predict(x, 500.0, cond, 3.5), dev.predict(x, 500.0, cond, 1.0))
    schnell = load_adapter(open_model(tiny_schnell_model), "cpu")
    cond = schnell.encode_prompt("a fox", "", 0.0)
    assert np.array_equal(schnell.predict(x, 500.0, cond, 0.0), schnell.predict(x, 500.0, cond, 3.5))


def test_a_negative_prompt_is_refused_even_by_a_direct_caller(tiny_flux_model):
    from gigacanvas.errors import UsageError

    adapter = load_adapter(open_model(tiny_flux_model), "cpu")
    with pytest.raises(UsageError, match="^negative_prompt is not taken by this model: Flux.1 is guidance-distilled"):
        adapter.encode_prompt("a fox", "blurry", 3.5)


def test_fp8_keeps_flux_s_input_and_output_layers_in_the_compute_dtype(tiny_flux_model):
    from gigacanvas.actors.models.architectures import meta_transformer
    from gigacanvas.actors.models.flux.architectures import FLUX1_DEV
    from gigacanvas.actors.precision import fp8_modules

    stored = fp8_modules(meta_transformer(FLUX1_DEV))
    for kept in ("x_embedder", "context_embedder", "time_text_embed.guidance_embedder.linear_1", "norm_out.linear", "proj_out"):
        assert kept not in stored
    for cast in ("transformer_blocks.0.norm1.linear", "transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.proj_out"):
        assert cast in stored


def test_a_converted_fp8_file_loads_as_the_transformer(tiny_flux_model, tmp_path):
    """`gigacanvas convert` writes Flux's transformer as one FP8 file that loads with --base-model
    and predicts what the folder predicts, to FP8's rounding."""
    from gigacanvas.actors.convert import convert_transformer

    out = convert_transformer(tiny_flux_model, str(tmp_path / "flux-fp8.safetensors"), "fp8")
    info = open_model(str(out), tiny_flux_model)
    assert (info.family, info.weights_precision) == ("flux", "fp8")
    folder = load_adapter(open_model(tiny_flux_model), "cpu", "fp32")
    single = load_adapter(info, "cpu", "fp8")
    x = initial_noise(1, 16, 16, 16)[None]
    cond = folder.encode_prompt("a fox", "", 3.5)
    want = folder.predict(x, 500.0, cond, 3.5)
    got = single.predict(x, 500.0, cond, 3.5)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
