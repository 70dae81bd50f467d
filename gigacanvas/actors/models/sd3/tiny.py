"""A tiny random-weight SD3.5-layout pipeline, built offline for the demo and the tests.

The same folder layout and component classes as `stabilityai/stable-diffusion-3.5-large` (16
latent channels, VAE scale factor 8, patch size 2, QK RMS-norm, two CLIP text encoders with
projections and a T5 encoder, each with a real tokenizer), only narrow and shallow;
`models/tiny.py` writes it and builds the tokenizers.
"""

from __future__ import annotations

import torch

from gigacanvas.actors.models.tiny import clip_tokenizer, t5_tokenizer

TINY_SAMPLE_SIZE = 32  # latent pixels: a native tile of 256 px
CLIP_DIM = 32
T5_DIM = 2 * CLIP_DIM  # SD3 pads the two concatenated CLIP embeddings up to the T5 width


def build_tiny_pipeline(seed: int = 0):
    """The tiny `StableDiffusion3Pipeline`, weights drawn from `seed` so a rebuild is identical."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer, tokenizer_3 = clip_tokenizer(), t5_tokenizer()

    def clip():
        return CLIPTextModelWithProjection(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=CLIP_DIM,
                intermediate_size=2 * CLIP_DIM,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=77,
                projection_dim=CLIP_DIM,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )

    text_encoder, text_encoder_2 = clip(), clip()
    text_encoder_3 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_3),
            d_model=T5_DIM,
            d_kv=16,
            d_ff=2 * T5_DIM,
            num_layers=2,
            num_heads=4,
            pad_token_id=tokenizer_3.pad_token_id,
            eos_token_id=tokenizer_3.eos_token_id,
        )
    )
    transformer = SD3Transformer2DModel(
        sample_size=TINY_SAMPLE_SIZE,
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_DIM,
        out_channels=16,
        pos_embed_max_size=96,
        qk_norm="rms_norm",
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
        sample_size=256,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
