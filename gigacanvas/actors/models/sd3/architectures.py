"""Transformer configs of the full-size SD3.5 models, for benchmarks and memory checks.

Copied from the `transformer/config.json` of stabilityai/stable-diffusion-3.5-large and -medium
(no weights needed: `models/architectures.py` builds them with random weights or on the meta
device, finding the class by `_class_name` as diffusers does).
"""

from __future__ import annotations

SD35_LARGE = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 38,
    "attention_head_dim": 64,
    "num_attention_heads": 38,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 2432,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 192,
    "qk_norm": "rms_norm",
}

SD35_MEDIUM = {
    "_class_name": "SD3Transformer2DModel",
    "sample_size": 128,
    "patch_size": 2,
    "in_channels": 16,
    "num_layers": 24,
    "attention_head_dim": 64,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048,
    "out_channels": 16,
    "pos_embed_max_size": 384,
    "qk_norm": "rms_norm",
    "dual_attention_layers": list(range(13)),
}

ARCHITECTURES = {"sd3.5-large": SD35_LARGE, "sd3.5-medium": SD35_MEDIUM}
