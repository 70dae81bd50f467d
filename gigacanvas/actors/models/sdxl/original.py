"""SDXL UNets in the original (Stability/LDM) layout, mapped to diffusers' keys by diffusers' own converter.

Checkpoints people download (`sd_xl_base_1.0.safetensors`, community fine-tunes) keep the UNet
as `model.diffusion_model.input_blocks.N...`, often beside the VAE (`first_stage_model.`) and
both text encoders (`conditioner.embedders.`). `checkpoint.iter_tensors` hands this module the
UNet's tensors with the prefix removed (the other components never reach it: see the family's
docs for why they are not used); diffusers' `convert_ldm_unet_checkpoint`, the converter its
`from_single_file` runs, wants the prefix back and the UNet's config, from which it reads the
block layout (`layers_per_block`) and the text-time embedding.
"""

from __future__ import annotations

from typing import Any

from gigacanvas.actors.checkpoint import ORIGINAL_PREFIX


def convert_original(state: dict[str, Any], config: dict | None = None, **_: Any) -> dict[str, Any]:
    """Diffusers' UNet state dict for the original-layout UNet tensors in `state` (keys without
    `model.diffusion_model.`); `config`: the UNet config the weights are loaded into."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if config is None:
        raise ValueError("the SDXL UNet converter needs the UNet config")
    return convert_ldm_unet_checkpoint({ORIGINAL_PREFIX + key: value for key, value in state.items()}, dict(config))
