"""LoRAs on the tiny models: pinned to diffusers' pipelines after their own `load_lora_weights`
(SD3 with a diffusers-format file, SDXL with a kohya-format file; one tile covering the latent,
through the adapter in this process: a render on Ray would add seconds of actor start-up and
test nothing LoRA-specific, since the actors get the planned ModelInfo as it is), weight 0 is the model without it, the fuse comes before the FP8
cast, the store's identity holds the LoRA, and bad input is one line at planning (exit 2)."""

from pathlib import Path

import numpy as np
import pytest

from gigacanvas import RenderSpec
from gigacanvas.cluster.plan import plan, with_loras
from gigacanvas.errors import UsageError
from tests.actors.lorafiles import diffusers_lora, kohya_lora
from tests.helpers import run_cli

WEIGHT = 0.7


@pytest.fixture(scope="module")
def sd3_lora(tiny_model, tmp_path_factory) -> str:
    return str(diffusers_lora(tiny_model, tmp_path_factory.mktemp("loras") / "sd3-style.safetensors"))


@pytest.fixture(scope="module")
def sdxl_kohya_lora(tiny_sdxl_model, tmp_path_factory) -> str:
    return str(kohya_lora(tiny_sdxl_model, tmp_path_factory.mktemp("loras") / "sdxl-style.safetensors"))


def _reference(pipeline_class, model, lora, latents, weight=WEIGHT, **call):
    """The pipeline's latent after `load_lora_weights` with `weight` (set_adapters), and without."""
    pipe = pipeline_class.from_pretrained(model, **({"add_watermarker": False} if "XL" in pipeline_class.__name__ else {}))
    pipe.set_progress_bar_config(disable=True)
    plain = pipe(**call, latents=latents, output_type="latent").images[0].numpy()
    pipe.load_lora_weights(lora, adapter_name="style")
    pipe.set_adapters("style", weight)
    return pipe(**call, latents=latents, output_type="latent").images[0].numpy(), plain


def _one_tile_latent(info, prompt, negative, steps, h, w, guidance, seed):
    """The step loop of one tile covering the whole latent, through the adapter an actor's Worker
    holds (here in this process: no actor to start) made from the planned ModelInfo."""
    import torch

    from gigacanvas.actors.loading import load_adapter
    from gigacanvas.tiling import initial_noise

    adapter = load_adapter(info, "cpu", "fp32")
    scheduler = adapter.make_scheduler(steps, h, w)
    cond = adapter.encode_prompt(prompt, negative, guidance)
    # as the step loop: Euler's first-noise scale and model-input scaling, none for flow matching
    latent = torch.from_numpy(initial_noise(seed, info.latent_channels, h, w))[None] * getattr(scheduler, "init_noise_sigma", 1.0)
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(latent, t) if hasattr(scheduler, "scale_model_input") else latent
        out = torch.from_numpy(adapter.predict(x.numpy(), float(t), cond, guidance))
        latent = scheduler.step(out, t, latent, return_dict=False)[0]
    return latent[0].numpy()


def test_one_tile_with_a_lora_matches_the_sd3_pipeline_with_its_lora(tiny_model, sd3_lora, tmp_path):
    """A diffusers-format LoRA (transformer and first CLIP) at weight 0.7, planned as `--lora
    FILE:0.7` and fused as an actor fuses it: StableDiffusion3Pipeline's latent after its own
    load_lora_weights + set_adapters(0.7), on the same prompts and initial noise."""
    import torch
    from diffusers import StableDiffusion3Pipeline

    from gigacanvas.tiling import initial_noise

    spec = RenderSpec(prompt="a lighthouse", model=tiny_model, lora=(f"{sd3_lora}:{WEIGHT}",), out=str(tmp_path / "x.png"))
    info = plan(spec).info
    ours = _one_tile_latent(info, "a lighthouse", "fog", 1, 8, 8, 4.5, 11)
    ref, plain = _reference(
        StableDiffusion3Pipeline, tiny_model, sd3_lora, torch.from_numpy(initial_noise(11, 16, 8, 8))[None],
        prompt="a lighthouse", negative_prompt="fog", width=64, height=64, num_inference_steps=1, guidance_scale=4.5,
    )
    diff, effect = np.abs(ours - ref).max(), np.abs(plain - ref).max()
    print(f"max abs difference vs StableDiffusion3Pipeline with the LoRA: {diff:.2e} (the LoRA moves it {effect:.2f})")
    assert effect > 1e-3  # the LoRA matters, so matching it means something
    assert diff < 1e-4 * max(1.0, np.abs(ref).max())


def test_a_kohya_lora_matches_the_sdxl_pipeline_with_its_lora(tiny_sdxl_model, sdxl_kohya_lora, tmp_path):
    """A kohya-format LoRA (lora_unet_, lora_te1_, lora_te2_, alphas) on SDXL, one tile covering the
    latent through the adapter: StableDiffusionXLPipeline's after load_lora_weights + set_adapters."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from gigacanvas.tiling import initial_noise

    spec = RenderSpec(prompt="a lighthouse", model=tiny_sdxl_model, lora=(f"{sdxl_kohya_lora}:{WEIGHT}",), out=str(tmp_path / "x.png"))
    info = plan(spec).info
    ours = _one_tile_latent(info, "a lighthouse", "fog", 1, 8, 8, 5.0, 3)
    ref, plain = _reference(
        StableDiffusionXLPipeline, tiny_sdxl_model, sdxl_kohya_lora, torch.from_numpy(initial_noise(3, 4, 8, 8))[None],
        prompt="a lighthouse", negative_prompt="fog", width=64, height=64, num_inference_steps=1, guidance_scale=5.0,
    )
    diff, effect = np.abs(ours - ref).max(), np.abs(plain - ref).max()
    print(f"max abs difference vs StableDiffusionXLPipeline with the kohya LoRA: {diff:.2e} (the LoRA moves it {effect:.2f})")
    assert effect > 1e-3
    assert diff < 1e-4 * max(1.0, np.abs(ref).max())


def test_weight_zero_is_the_model_without_the_lora(tiny_model, sd3_lora, tmp_path):
    """Bit for bit, transformer and text encoder, through the loaders the actors use; and weight
    0.7 is not (so the test can fail)."""
    from types import SimpleNamespace

    import torch
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection

    from gigacanvas.actors.checkpoint import load_denoiser
    from gigacanvas.actors.lora import fuse_into_text_encoders
    from gigacanvas.actors.models.sd3 import FAMILY

    base = plan(RenderSpec(prompt="a fox", model=tiny_model, out=str(tmp_path / "x.png"))).info

    def weights(weight):
        loras = () if weight is None else with_loras(RenderSpec(prompt="a fox", lora=(f"{sd3_lora}:{weight}",)), base)[1].loras
        denoiser = load_denoiser(SD3Transformer2DModel, Path(tiny_model), None, FAMILY, "fp32", "cpu", "t", loras)
        pipe = SimpleNamespace(text_encoder=CLIPTextModelWithProjection.from_pretrained(Path(tiny_model) / "text_encoder"))
        fuse_into_text_encoders(pipe, FAMILY, loras)
        return {**denoiser.state_dict(), **{f"te.{k}": v for k, v in pipe.text_encoder.state_dict().items()}}

    plain, zero, some = weights(None), weights(0), weights(WEIGHT)
    assert plain.keys() == zero.keys() == some.keys()  # no adapter layers left behind
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    changed = [k for k in plain if not torch.equal(plain[k], some[k])]
    assert any(k.startswith("te.") for k in changed) and any(not k.startswith("te.") for k in changed)


def test_fp8_stores_the_fused_weights(tiny_model, sd3_lora, tmp_path):
    """The LoRA is fused in the compute dtype, then the FP8 layers are cast: each FP8 weight is the
    fused fp32 weight cast to float8_e4m3fn (not the base weight's, with the LoRA lost or added later)."""
    import torch
    from diffusers import SD3Transformer2DModel

    from gigacanvas.actors.checkpoint import load_denoiser
    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.models.sd3 import FAMILY

    spec = RenderSpec(prompt="a fox", model=tiny_model, lora=(f"{sd3_lora}:{WEIGHT}",), out=str(tmp_path / "x.png"))
    loras = with_loras(spec, open_model(tiny_model))[1].loras

    def load(precision, with_lora=True):
        return load_denoiser(SD3Transformer2DModel, Path(tiny_model), None, FAMILY, precision, "cpu", "t", loras if with_lora else ())

    fused, fp8, plain_fp8 = load("fp32").state_dict(), load("fp8").state_dict(), load("fp8", False).state_dict()
    name = "transformer_blocks.0.attn.to_q.weight"  # a layer the LoRA changes, stored in FP8
    assert fp8[name].dtype == torch.float8_e4m3fn
    assert torch.equal(fp8[name].float(), fused[name].to(torch.float8_e4m3fn).float())
    assert not torch.equal(fp8[name].float(), plain_fp8[name].float())
    assert not any(".lora_" in key for key in fp8)  # the adapter layers are gone: no cost per step


def test_the_loras_and_weights_are_the_stores_identity(tiny_model, sd3_lora, tmp_path):
    """Planned with a LoRA the content records its fingerprint and weight; a store made with it is
    refused to a render without it or at another weight, and a spec recording it wants the file."""
    from gigacanvas.storage import LatentStore

    url = "memory://gc-lora/identity.zarr"
    spec = RenderSpec(prompt="a fox", model=tiny_model, width=128, height=128, store=url, out=str(tmp_path / "i.png"))
    made = plan(spec.replace(lora=(f"{sd3_lora}:0.5",))).spec
    fingerprint = made.lora_fingerprints.split(":")[0]
    assert made.content()["lora_fingerprints"] == f"{fingerprint}:0.5" and len(fingerprint) == 16
    info = plan(spec).info
    store = LatentStore(url)
    store.create(made.content(), info.fingerprint, channels=16, height=16, width=16, scale=8, bands=1)
    store.write_noise(np.zeros((16, 16, 16), np.float32))
    assert plan(spec.replace(lora=(f"{sd3_lora}:0.5",))).store_action.startswith("resume")
    for other in (None, (f"{sd3_lora}:0.6",)):
        with pytest.raises(UsageError, match="holds a render of another spec .differs in lora_fingerprints"):
            plan(spec.replace(lora=other))
    with pytest.raises(UsageError, match="made with LoRAs .* and is given no --lora"):
        with_loras(spec.replace(lora_fingerprints=made.lora_fingerprints), info)


@pytest.mark.parametrize("case", ["another architecture", "missing", "pickle", "not safetensors", "bad weight", "wrong size"])
def test_bad_loras_are_one_line_at_planning(case, tiny_model, sdxl_kohya_lora, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    lora = {
        "another architecture": sdxl_kohya_lora,
        "missing": str(tmp_path / "gone.safetensors"),
        "pickle": str(tmp_path / "style.pt"),
        "not safetensors": str(tmp_path / "text.safetensors"),
        "bad weight": f"{sdxl_kohya_lora}:12",
        "wrong size": str(tmp_path / "wide.safetensors"),
    }[case]
    torch.save({"x": torch.zeros(1)}, tmp_path / "style.pt")
    (tmp_path / "text.safetensors").write_text("not a tensor file")
    name = "transformer.transformer_blocks.0.attn.to_q"  # a real layer, with the inputs of another size of model
    save_file({f"{name}.lora_A.weight": torch.zeros(4, 4096), f"{name}.lora_B.weight": torch.zeros(64, 4)}, str(tmp_path / "wide.safetensors"))
    code, _, err = run_cli(
        capsys, "render", "--model", tiny_model, "--prompt", "a fox", "--lora", lora, "--out", str(tmp_path / "p.png"), "--dry-run"
    )
    assert code == 2 and err.count("\n") == 1, err
    says = {
        "another architecture": "does not fit this SD3/SD3.5 model: its key 'lora_te1_",
        "missing": "does not exist",
        "pickle": "is a pickle file (.pt), refused because loading it can run code",
        "not safetensors": "is not a readable safetensors file",
        "bad weight": "has weight '12'",
        "wrong size": "reads 4096 inputs where the transformer's layer has",
    }[case]
    assert says in err


def test_a_lora_on_a_gguf_transformer_is_refused_before_any_file_is_read(tiny_model, tmp_path):
    """A LoRA is fused into the weights before they are quantised; a GGUF's are quantised already."""
    from dataclasses import replace

    from gigacanvas.actors.lora import check_loras
    from gigacanvas.cluster.lora import parse_loras

    info = replace(plan(RenderSpec(prompt="a fox", model=tiny_model, width=128, height=128)).info,
                   weights_precision="gguf", transformer_file=str(tmp_path / "t.gguf"))
    with pytest.raises(UsageError, match=r"^--lora cannot be fused into a GGUF transformer .*t\.gguf"):
        check_loras(parse_loras((str(tmp_path / "never-read.safetensors"),)), info)
