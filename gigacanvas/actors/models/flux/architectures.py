"""Transformer configs of the full-size Flux.1 models, for benchmarks and memory checks.

Copied from the `transformer/config.json` of black-forest-labs/FLUX.1-dev and FLUX.1-schnell
(no weights needed: `models/architectures.py` builds them with random weights or on the meta
device). The two differ only in the guidance embedding, a few million parameters of 12 B.
"""

from __future__ import annotations

FLUX1_DEV = {
    "_class_name": "FluxTransformer2DModel",
    "attention_head_dim": 128,
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
    "axes_dims_rope": [16, 56, 56],
}

FLUX1_SCHNELL = {**FLUX1_DEV, "guidance_embeds": False}

ARCHITECTURES = {"flux.1-dev": FLUX1_DEV, "flux.1-schnell": FLUX1_SCHNELL}
