"""The VAE mid-block's attention within square windows, for latents too large to attend globally.

Past actors/vaedecode.py's EXACT_ATTENTION_PIXELS the mid-block's global attention is quadratic
in the canvas; windows keep it linear at an error benchmarks/vae_tiling.py measures (`windowed`).
"""

from __future__ import annotations

from typing import Any

from gigacanvas.tiling.decodetiles import plan_decode_tiles


class WindowedAttention:
    """A diffusers attention processor for the VAE's mid-block that attends within square windows.

    The attention's GroupNorm still sees the whole latent (its statistics are global, like every
    other GroupNorm here); only the softmax is local. Each window runs diffusers' own
    `AttnProcessor2_0` with the norm and the residual taken out, then the residual is added back:
    `(attention + residual) / rescale`, as the processor itself computes it.
    """

    def __init__(self, window: int):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.window = window
        self.inner = AttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        import torch

        if encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 4:
            raise ValueError("windowed attention is for the VAE's self-attention on (B, C, H, W) only")
        normed = attn.group_norm(hidden_states) if attn.group_norm is not None else hidden_states
        out = torch.empty_like(hidden_states)
        norm, residual = attn.group_norm, attn.residual_connection
        attn.group_norm, attn.residual_connection = None, False
        try:
            for tile in plan_decode_tiles(*hidden_states.shape[-2:], self.window, 0):
                rows, cols = tile.core.slices
                out[:, :, rows, cols] = self.inner(attn, normed[:, :, rows, cols].contiguous())
        finally:
            attn.group_norm, attn.residual_connection = norm, residual
        if residual:
            out = out + hidden_states / attn.rescale_output_factor
        return out
