"""Stable Diffusion XL: everything gigacanvas knows of the family, in one package.

This module is the family's description (light: no torch, no diffusers at import); the adapter
(`adapter.py`), the tiny pipeline (`tiny.py`) and the full-size configs (`architectures.py`) are
imported when used. The denoiser is a `UNet2DConditionModel` in the folder's `unet/` (the generic
code calls it the transformer: the model the tiles go through), conditioned on two CLIP text
encoders (ViT-L's hidden states, OpenCLIP bigG's hidden states and pooled projection) and on
size and crop ids. The scheduler is the folder's: SDXL ships `EulerDiscreteScheduler` with
epsilon prediction; v-prediction is the same scheduler with another `prediction_type`.

`--scheduler` picks another from `SCHEDULERS`, configured from the folder's scheduler config
(`Cls.from_config`: the beta schedule, prediction type and timestep spacing carry over): Euler,
Euler ancestral, DDIM, DDPM, LCM and TCD each call the model once per step and keep nothing
between steps but the step index, so a band reducer can step its rows from any step. The
stochastic ones (Euler ancestral, DDPM, LCM, TCD, DDIM with eta) draw their per-step noise
through `randn_tensor`, which the reducers answer with the seed's noise keyed by step and
position (actors/stepnoise.py): the bytes do not depend on the actor count, but they are not the
pipeline's, which draws from its generator. Left out, and refused in one line by the generic
rules (actors/configs.py) where the folder names them: multistep solvers (DPM++ 2M,
UniPC, DEIS, SA-Solver, PNDM, LMS) keep earlier steps' model outputs, which a reducer started at
a resume (or restarted) would not have, so a resumed render would not be the one that never
stopped; second-order samplers (Heun, DPM2, DPM2 ancestral) call the model twice per step on
the whole latent's half-step, which the banded loop (one tile pass per step) does not make; SDE
samplers that draw from a Brownian tree over the whole latent cannot be keyed per band.

Sizes: the latent has 4 channels and the VAE scale factor is 8; the UNet halves the latent once
per down block but the last, so tile sides are multiples of that factor (SDXL: 4 latent pixels,
32 px). The native tile is the UNet's `sample_size` times 8 (1024 px for SDXL 1.0): the
pipeline's default picture. A UNet has no positional table, so there is no largest tile.

Single files: the diffusers layout (`down_blocks.N...`, a folder's `unet/` weights) works as
`--model FILE --base-model FOLDER` (and `gigacanvas convert` writes one); so does the original
Stability layout (`input_blocks.N...`, maybe under `model.diffusion_model.`), whose UNet diffusers'
own `convert_ldm_unet_checkpoint` maps (`original.py`). A full checkpoint's VAE
(`first_stage_model.`) and text encoders (`conditioner.`) are not used: the base folder's are,
as for SD3 and Flux.1 files. The UNet is what the tiles, FP8 and `convert` work on; the VAE and
encoders would need their own single-file loading on every node and planning checks of configs
the file does not hold, and most fine-tunes ship SDXL 1.0's own. A checkpoint whose baked VAE or
encoders matter can be made into a folder once with diffusers
(`StableDiffusionXLPipeline.from_single_file(FILE, config=BASE_FOLDER).save_pretrained(FOLDER)`,
offline with a local config) and passed as `--model FOLDER`.
GGUF files are refused (no `gguf_arch`): diffusers' GGUF support swaps only Linear layers
for quantised ones, and the SDXL GGUFs in circulation (city96's converter) reshape the tensors
whose rows do not fit the quantiser's blocks and record the shape in `comfy.gguf.orig_shape.*`
metadata, which diffusers' loader does not undo.
"""

from __future__ import annotations

from gigacanvas.actors.models import Family
from gigacanvas.errors import UsageError

STEPS, GUIDANCE = 50, 5.0  # StableDiffusionXLPipeline's defaults
# `--scheduler` choices: one model call per step, nothing kept between steps (see above)
SCHEDULERS = (
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DDIMScheduler",
    "DDPMScheduler",
    "LCMScheduler",
    "TCDScheduler",
)


def sizes(unet: dict, vae: dict) -> dict:
    """The planner's sizes and defaults from the configs as diffusers builds them."""
    if vae.get("latents_mean") is not None:
        raise UsageError(
            "this VAE normalises latents with latents_mean/latents_std, which gigacanvas's decode does not "
            "apply yet; use a VAE without them (SDXL 1.0's)"
        )
    return {
        "latent_channels": unet["in_channels"],
        "vae_scale_factor": 2 ** (len(vae["block_out_channels"]) - 1),  # as the SDXL pipeline computes it
        "patch_size": 2 ** (len(unet["down_block_types"]) - 1),  # each down block but the last halves
        "native_tile_px": unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1),
        "max_tile_px": None,
        "defaults": (("guidance", GUIDANCE), ("steps", STEPS)),
    }


FAMILY = Family(
    name="sdxl",
    label="SDXL",
    short="SDXL",
    adapter="gigacanvas.actors.models.sdxl.adapter:SDXLAdapter",
    # not StableDiffusionXLImg2ImgPipeline: on the hub that is the refiner (no first text encoder,
    # aesthetic-score ids), which this adapter does not condition; it is refused by name
    pipelines=("StableDiffusionXLPipeline",),
    components=("unet", "vae", "text_encoder", "text_encoder_2"),
    transformer_class="UNet2DConditionModel",
    denoiser="unet",
    planner_keys=("in_channels", "sample_size"),
    sizes=sizes,
    scheduler="EulerDiscreteScheduler",
    schedulers=SCHEDULERS,
    diffusers_blocks="down_blocks",
    original_blocks="input_blocks",
    convert_original="gigacanvas.actors.models.sdxl.original:convert_original",
    checkpoint_format="gigacanvas-sdxl-unet",
    gguf_kept=("^conv_in", "^conv_out", "^time_embedding", "^add_embedding", "^class_embedding"),
    architectures="gigacanvas.actors.models.sdxl.architectures:ARCHITECTURES",
    tiny_pipeline="gigacanvas.actors.models.sdxl.tiny:build_tiny_pipeline",
    # the UNet's input and output convolutions and its timestep and size/pooled-text embedding MLPs
    fp8_skip=("^conv_in$", "^conv_out$", "^time_embedding", "^add_embedding"),
)
