"""A tiny random-weight SDXL-layout pipeline, built offline for the demo and the tests.

The same folder layout and component classes as `stabilityai/stable-diffusion-xl-base-1.0` (a
4-channel latent, VAE scale factor 8 with SDXL's scaling factor and `force_upcast`, a UNet with
text-time additional embeddings, CLIP ViT-L-like and OpenCLIP bigG-like text encoders, the latter
with a projection for the pooled embedding, each with a real tokenizer from `models/tiny.py`, and
SDXL's EulerDiscreteScheduler config), only narrow and shallow. `prediction_type` builds the
v-prediction variant.
"""

from __future__ import annotations

import torch

from gigacanvas.actors.models.tiny import clip_tokenizer

TINY_SAMPLE_SIZE = 32  # latent pixels: a 256 px native tile
CLIP_DIM = 32
TIME_DIM = 8  # addition_time_embed_dim: six size/crop ids of TIME_DIM each, plus the pooled text

# stabilityai/stable-diffusion-xl-base-1.0's scheduler/scheduler_config.json
SDXL_SCHEDULER = dict(
    beta_end=0.012,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    interpolation_type="linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="leading",
    trained_betas=None,
    use_karras_sigmas=False,
)


def build_tiny_pipeline(seed: int = 0, prediction_type: str = "epsilon"):
    """The tiny `StableDiffusionXLPipeline`, weights drawn from `seed` so a rebuild is identical."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()

    def clip_config(**extra):
        return CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=CLIP_DIM,
            intermediate_size=2 * CLIP_DIM,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **extra,
        )

    text_encoder = CLIPTextModel(clip_config())
    text_encoder_2 = CLIPTextModelWithProjection(clip_config(projection_dim=CLIP_DIM))
    unet = UNet2DConditionModel(
        sample_size=TINY_SAMPLE_SIZE,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=4,
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
        cross_attention_dim=2 * CLIP_DIM,  # both encoders' hidden states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=6 * TIME_DIM + CLIP_DIM,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=TINY_SAMPLE_SIZE * 8,
        scaling_factor=0.13025,
        force_upcast=True,
    )
    scheduler = EulerDiscreteScheduler(**{**SDXL_SCHEDULER, "prediction_type": prediction_type})
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def build_tiny_v_pipeline(seed: int = 0):
    """The tiny v-prediction variant."""
    return build_tiny_pipeline(seed, prediction_type="v_prediction")
