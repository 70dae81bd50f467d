"""Flux.1 ([dev] and [schnell]): everything gigacanvas knows of the family, in one package.

This module is the family's description (light: no torch, no diffusers at import); the adapter
(`adapter.py`), the tiny pipeline (`tiny.py`) and the full-size configs (`architectures.py`) are
imported when used. Both releases are one diffusers class, `FluxPipeline`; they differ in their
transformer config (`guidance_embeds`: [dev] is guidance-distilled, [schnell] timestep-distilled)
and scheduler config (dynamic shifting on [dev] only), so the defaults and refusals below are read
from the configs, not from a name. Single files come in the diffusers layout
(`transformer_blocks.N...`, `single_transformer_blocks.N...`) or in Black Forest Labs' original
layout (`double_blocks.N...`, maybe under `model.diffusion_model.`), which diffusers' own
converter maps. `--scheduler` picks among the flow-matching samplers the band loop can step, as
for SD3 (`FLOW_SCHEDULERS`; see sd3/__init__.py for why the others are refused); the tile's
timestep shift applies to each.

Sizes: the transformer works on 2x2 patches of the 16-channel latent packed into 64-channel
tokens (its own `patch_size` is 1 and its `in_channels` 64); gigacanvas tiles, blends, noises and
steps the unpacked latent, so the planner sees 16 channels and a patch of 2 latent pixels, and
the adapter packs and unpacks. The native tile is the VAE config's `sample_size` (1024 px in both
releases: diffusers' pipeline default of 128 latent pixels times 8); RoPE positions have no
table, so there is no largest tile.
"""

from __future__ import annotations

from gigacanvas.actors.models import FLOW_SCHEDULERS, Family

PACK = 2  # latent pixels per side of a packed token
DEV_STEPS, DEV_GUIDANCE = 28, 3.5  # FluxPipeline's defaults, which [dev] is made for
SCHNELL_STEPS = 4  # [schnell] is distilled for 1 to 4 steps
NEGATIVE = "Flux.1 is guidance-distilled and runs no negative pass (use the prompt alone)"
NO_GUIDANCE = "Flux.1 [schnell] has no guidance input (this transformer has no guidance embedding)"


def sizes(transformer: dict, vae: dict) -> dict:
    """The planner's sizes, defaults and refusals from the configs as diffusers builds them."""
    distilled_guidance = bool(transformer.get("guidance_embeds"))
    if distilled_guidance:  # [dev]: --guidance is the distilled guidance input
        defaults = (("guidance", DEV_GUIDANCE), ("steps", DEV_STEPS))
        refused = (("negative_prompt", NEGATIVE),)
    else:  # [schnell]: no guidance input; 0 is recorded so a picture says none was used
        defaults = (("guidance", 0.0), ("steps", SCHNELL_STEPS))
        refused = (("negative_prompt", NEGATIVE), ("guidance", NO_GUIDANCE))
    return {
        "latent_channels": transformer["in_channels"] // (PACK * PACK),
        "vae_scale_factor": 2 ** (len(vae["block_out_channels"]) - 1),  # as diffusers' Flux pipeline computes it
        "patch_size": PACK,
        "native_tile_px": vae["sample_size"],
        "max_tile_px": None,
        "defaults": defaults,
        "refused": refused,
    }


FAMILY = Family(
    name="flux",
    label="Flux.1",
    short="Flux",
    adapter="gigacanvas.actors.models.flux.adapter:FluxAdapter",
    pipelines=("FluxPipeline",),
    components=("transformer", "vae", "text_encoder", "text_encoder_2"),
    transformer_class="FluxTransformer2DModel",
    planner_keys=("in_channels",),
    sizes=sizes,
    scheduler="FlowMatchEulerDiscreteScheduler",
    schedulers=FLOW_SCHEDULERS,
    diffusers_blocks="transformer_blocks",
    original_blocks="double_blocks",
    convert_original="diffusers.loaders.single_file_utils:convert_flux_transformer_checkpoint_to_diffusers",
    checkpoint_format="gigacanvas-flux-transformer",
    gguf_arch="flux",
    gguf_kept=("^x_embedder", "^context_embedder", "^time_text_embed", "^norm_out", "^proj_out"),
    architectures="gigacanvas.actors.models.flux.architectures:ARCHITECTURES",
    tiny_pipeline="gigacanvas.actors.models.flux.tiny:build_tiny_pipeline",
    fp8_skip=("x_embedder",),
)
