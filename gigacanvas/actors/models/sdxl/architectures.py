"""UNet configs of the full-size SDXL models, for benchmarks and memory checks.

The keys of `unet/config.json` of stabilityai/stable-diffusion-xl-base-1.0 that differ from
`UNet2DConditionModel`'s defaults (no weights needed: `models/architectures.py` builds it with
random weights or on the meta device): 2.6 B parameters.
"""

from __future__ import annotations

SDXL_BASE = {
    "_class_name": "UNet2DConditionModel",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

ARCHITECTURES = {"sdxl-base": SDXL_BASE}
