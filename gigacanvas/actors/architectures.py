"""Transformer configs of the full-size SD3.5 models, for benchmarks and memory checks.

Copied from the `transformer/config.json` of stabilityai/stable-diffusion-3.5-large and -medium
(no weights needed: the architectures are instantiated with random weights or on the meta device).
"""

from __future__ import annotations

SD35_LARGE = {
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


def meta_transformer(config: dict):
    """The architecture on the meta device: counts and byte plans, no memory."""
    from accelerate import init_empty_weights
    from diffusers import SD3Transformer2DModel

    with init_empty_weights(include_buffers=True):
        return SD3Transformer2DModel.from_config(config)


def random_transformer(config: dict, mode: str, device: str, std: float = 0.02, compute_dtype=None):
    """The architecture with random weights laid out as the loader lays out `mode` on `device`.

    Each tensor is drawn straight into its final dtype on `device`, one at a time, so building an
    FP8 model never holds its bf16 copy; then the mode's precision hooks are applied. Values are
    small normals: weights don't change speed or size, so benchmarks on them are honest.
    """
    import torch

    from gigacanvas.actors.precision import apply_precision, dtype_rule, dtypes

    model = meta_transformer(config)
    compute = dtypes(mode, device)[1]
    if compute_dtype is not None and mode == "fp8":  # e.g. a GPU's bf16 layout measured on a CPU
        compute = compute_dtype
    dtype_for = dtype_rule(model, mode, device, compute)
    state = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        value = torch.empty(tensor.shape, dtype=compute, device=device).normal_(0.0, std)
        state[name] = value.to(dtype_for(name))
    model.load_state_dict(state, strict=True, assign=True)
    del state
    apply_precision(model, mode, device, compute)
    return model.eval()
