"""A tiny random-weight Flux.1-layout pipeline, built offline for the demo and the tests.

The same folder layout and component classes as `black-forest-labs/FLUX.1-dev` (a 16-channel
latent packed 2x2 into 64-channel tokens, VAE scale factor 8 with Flux's scale and shift, RoPE
positions, a CLIP text encoder for the pooled embedding and a T5 for the sequence, each with a
real tokenizer from `models/tiny.py`), only narrow and shallow. `schnell=True` builds the
[schnell] variant: no guidance embedding, a scheduler without dynamic shifting.
"""

from __future__ import annotations

import torch

from gigacanvas.actors.models.tiny import clip_tokenizer, t5_tokenizer

TINY_TILE_PX = 256  # the VAE's sample_size, which gigacanvas takes as the native tile
CLIP_DIM = 32
T5_DIM = 32


def build_tiny_pipeline(seed: int = 0, schnell: bool = False):
    """The tiny `FluxPipeline`, weights drawn from `seed` so a rebuild is identical."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=CLIP_DIM,
            intermediate_size=2 * CLIP_DIM,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=T5_DIM,
            d_kv=16,
            d_ff=2 * T5_DIM,
            num_layers=2,
            num_heads=2,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
        )
    )
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        pooled_projection_dim=CLIP_DIM,
        guidance_embeds=not schnell,
        axes_dims_rope=(4, 6, 6),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=16,
        sample_size=TINY_TILE_PX,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    if schnell:
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    else:  # FLUX.1-dev's scheduler config
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_image_seq_len=256,
            max_image_seq_len=4096,
            base_shift=0.5,
            max_shift=1.15,
        )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def build_tiny_schnell_pipeline(seed: int = 0):
    """The tiny [schnell] variant."""
    return build_tiny_pipeline(seed, schnell=True)
