"""Stable Diffusion 3 / 3.5: everything gigacanvas knows of the family, in one package.

This module is the family's description (light: no torch, no diffusers at import); the adapter
(`adapter.py`), the tiny pipeline (`tiny.py`) and the full-size configs (`architectures.py`)
are imported when used. Single files come in the diffusers layout (`transformer_blocks.N...`) or
in the original SD3 layout (`joint_blocks.N...`, maybe under `model.diffusion_model.`), which
diffusers' own converter maps.

`--scheduler` may pick a flow-matching sampler the band loop can step (`FLOW_SCHEDULERS`:
FlowMatchEulerDiscreteScheduler, FlowMatchLCMScheduler), configured from the folder's config.
Multistep solvers with flow sigmas (UniPC, DPM++) keep earlier steps' outputs, which a band
reducer started at a resume would not have, and FlowMatchHeun calls the model twice per step:
refused in one line. Non-flow samplers (Euler, DDIM) assume another noise parameterisation.
"""

from __future__ import annotations

from gigacanvas.actors.models import FLOW_SCHEDULERS, Family


def sizes(transformer: dict, vae: dict) -> dict:
    """The planner's sizes from the configs as diffusers builds them (defaults filled)."""
    vae_scale = 2 ** (len(vae["block_out_channels"]) - 1)  # as diffusers' SD3 pipeline computes it
    table = transformer.get("pos_embed_max_size")  # latent patches per side; None: computed per size
    return {
        "latent_channels": transformer["in_channels"],
        "vae_scale_factor": vae_scale,
        "patch_size": transformer["patch_size"],
        "native_tile_px": transformer["sample_size"] * vae_scale,
        # SD3 crops its positional table to each input: a larger tile raises in the first step
        "max_tile_px": table * transformer["patch_size"] * vae_scale if table else None,
    }


FAMILY = Family(
    name="sd3",
    label="SD3/SD3.5",
    short="SD3",
    adapter="gigacanvas.actors.models.sd3.adapter:SD3Adapter",
    pipelines=("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
    components=("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"),
    transformer_class="SD3Transformer2DModel",
    planner_keys=("in_channels", "patch_size", "sample_size"),
    sizes=sizes,
    scheduler="FlowMatchEulerDiscreteScheduler",
    schedulers=FLOW_SCHEDULERS,
    diffusers_blocks="transformer_blocks",
    original_blocks="joint_blocks",
    convert_original="diffusers.loaders.single_file_utils:convert_sd3_transformer_checkpoint_to_diffusers",
    checkpoint_format="gigacanvas-sd3-transformer",
    gguf_arch="sd3",
    gguf_kept=("^pos_embed", "^time_text_embed", "^context_embedder", "^norm_out", "^proj_out"),
    architectures="gigacanvas.actors.models.sd3.architectures:ARCHITECTURES",
    tiny_pipeline="gigacanvas.actors.models.sd3.tiny:build_tiny_pipeline",
)
