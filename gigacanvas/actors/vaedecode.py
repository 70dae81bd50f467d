"""The seamless VAE decode: diffusers' own AutoencoderKL decoder, cut in two and run in tiles with
the GroupNorm statistics of the whole canvas.

Why: a tiled decoder whose tiles normalise their own GroupNorm statistics disagrees with its
neighbours (tone shifts, seams: diffusers' `enable_tiling()` is 19-21 of 255 off on average on the
SD3.5 VAE). Here the decoder runs as two stages:

- the head (post_quant_conv, conv_in, mid-block) on the whole latent, in one process: its
  attention is global, so nothing short of the whole latent computes it exactly. It runs at the
  latent's resolution, 1/64 of the picture's pixels; its activations are the one part of the
  decode whose size grows with the canvas (see `head_bytes`);
- the tail (up-blocks, conv_norm_out, conv_out) in tiles whose cores partition the canvas, each
  read with a halo of the tail's receptive radius (`halo`, found by tracing the tail's convs), so
  a core's activations are those of the whole decode at every layer.

Every GroupNorm of the tail is swapped, for the duration of a call, for one that normalises with
statistics handed in (`known`), in the order the tail calls them. The statistics come from
passes: pass k runs every tile up to GroupNorm k, with 0..k-1 known, and returns the moments of
the core's pixels there (`probe`); the driver merges them in tile order (tiling/groupstats.py).
That is exact and holds one tile at a time, at the price of recomputing the tail's front once per
GroupNorm (about 10x a plain decode's compute). `estimate` is the fast mode: the statistics of a
whole decode of the head's output subsampled to at most `side` latent pixels, one cheap decode and one
pass instead of one per GroupNorm.

The decoder is never forked or copied: its modules, weights and forward order are diffusers'; the
tail's forward below repeats the four lines of `Decoder.forward` after the mid-block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from gigacanvas.tiling.decodetiles import plan_decode_tiles
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.groupstats import group_moments, mean_and_variance

# The mid-block's attention is exact (global) up to this many latent pixels: 1024 x 1024, an
# 8192 x 8192 picture at factor 8 (about 6 s of attention for SD3.5's VAE on an H100, and
# quadratic beyond). Larger latents attend within square windows of ATTENTION_WINDOW latent pixels
# a side (benchmarks/vae_tiling.py measures what that costs in error). Both follow from the canvas
# size alone, so the pixels still depend on the spec only.
EXACT_ATTENTION_PIXELS = 1 << 20
ATTENTION_WINDOW = 256


class _Probed(Exception):
    """Raised from inside the tail to stop it at the probed GroupNorm, carrying its moments."""

    def __init__(self, moments: np.ndarray):
        super().__init__("probe")
        self.moments = moments


class SeamlessVae:
    """Decode stages of one AutoencoderKL on one device; plain Python, driven by a worker actor."""

    def __init__(self, vae: Any, device: str, dtype: Any):
        import torch

        self.torch = torch
        self.vae = vae
        self.decoder = vae.decoder
        self.device = device
        self.dtype = dtype
        self.scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.head_channels = vae.config.block_out_channels[-1]
        self._check_tail()
        self.norms, self.halo = self._trace()
        self.norm_count = len(self.norms)

    # -- the two stages --------------------------------------------------------------------

    def head(self, latent: np.ndarray) -> np.ndarray:
        """(C, h, w) latent (as the sampler left it) to the mid-block's (C', h, w) float32 output."""
        torch = self.torch
        vae = self.vae
        z = torch.from_numpy(np.ascontiguousarray(latent))[None].to(self.device, self.dtype)
        with torch.inference_mode():
            z = z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
            if vae.post_quant_conv is not None:
                z = vae.post_quant_conv(z)
            with self._windowed_attention(z.shape[-2] * z.shape[-1] > EXACT_ATTENTION_PIXELS):
                x = self.decoder.mid_block(self.decoder.conv_in(z), None)
        return x[0].float().cpu().numpy()

    @contextmanager
    def _windowed_attention(self, windowed: bool) -> Iterator[None]:
        from diffusers.models.attention_processor import Attention

        mods = [m for m in self.decoder.mid_block.modules() if isinstance(m, Attention)] if windowed else []
        before = [m.processor for m in mods]
        for module in mods:
            module.set_processor(WindowedAttention(ATTENTION_WINDOW))
        try:
            yield
        finally:
            for module, processor in zip(mods, before):
                module.set_processor(processor)

    def _tail(self, x: Any) -> Any:
        decoder = self.decoder
        for up_block in decoder.up_blocks:
            x = up_block(x, None)
        x = decoder.conv_norm_out(x)
        x = decoder.conv_act(x)
        return decoder.conv_out(x)

    def tail(
        self, window: np.ndarray, core: Window, known: Sequence[np.ndarray] | None, probe: int | None = None
    ) -> np.ndarray:
        """Run the tail on a (C', h, w) window of the head's output.

        `core` is the owned part, relative to the window, in latent pixels. With `probe` k, stop
        at GroupNorm k (statistics 0..k-1 in `known`) and return its (groups, 3) moments over the
        core; without, every GroupNorm's statistics are known and the core's (3, h*s, w*s)
        float32 pixels in [-1, 1] come back. `known` None: the window is the whole canvas and
        normalises with its own statistics (one call instead of a pass per GroupNorm).
        """
        torch = self.torch
        if known is None:  # one tile, the whole canvas: its own statistics are the canvas's
            if probe is not None or tuple(core) != (0, 0, *window.shape[-2:]):
                raise ValueError("only a tile that is the whole canvas decodes with its own statistics")
            norms = self._recording([])
        else:
            needed = len(self.norms) if probe is None else probe
            if len(known) < needed or (probe is not None and not 0 <= probe < len(self.norms)):
                raise ValueError(f"probe {probe} needs statistics for {needed} GroupNorms; got {len(known)}")
            norms = self._shared_norms(window.shape[-2], core, known, probe)
        x = torch.from_numpy(np.ascontiguousarray(window))[None].to(self.device, self.dtype)
        with torch.inference_mode(), norms:
            try:
                pixels = self._tail(x)
            except _Probed as probed:
                return probed.moments
        s = self.scale
        y, x0 = core.y * s, core.x * s
        return pixels[0, :, y : y + core.h * s, x0 : x0 + core.w * s].float().cpu().numpy()

    def estimate(self, head_out: np.ndarray, side: int) -> list[np.ndarray]:
        """Every tail GroupNorm's moments from one whole decode of `head_out` subsampled to at most
        `side` latent pixels a side (the fast mode's statistics; `side` >= the canvas: exact)."""
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(head_out))[None].to(self.device, self.dtype)
        h, w = x.shape[-2:]
        factor = max(1, math.ceil(max(h, w) / side))
        if factor > 1:
            # every factor-th pixel, not an average: averaging noise-like activations shrinks their
            # variance by the factor squared and every statistic after it (SD3.5 VAE, 512 px, 2x:
            # 91 of 255 off on average with area averaging, 4.6 with this)
            x = x[:, :, ::factor, ::factor].contiguous()
        recorded: list[np.ndarray] = []
        with torch.inference_mode(), self._recording(recorded):
            self._tail(x)
        return recorded

    # -- how the GroupNorms are swapped -----------------------------------------------------

    def _moments(self, norm: Any, x: Any) -> np.ndarray:
        groups = norm.num_groups
        return group_moments(x.reshape(groups, -1))

    def _normalise(self, norm: Any, x: Any, stats: np.ndarray) -> Any:
        """GroupNorm with the given statistics, computed in float32 as torch's own kernel does."""
        torch = self.torch
        mean, var = mean_and_variance(stats)
        groups = norm.num_groups
        mean_t = torch.from_numpy(mean.astype(np.float32)).to(x.device)
        rstd_t = torch.from_numpy((1.0 / np.sqrt(var + norm.eps)).astype(np.float32)).to(x.device)
        shape = x.shape
        y = (x.float().reshape(shape[0], groups, -1) - mean_t[None, :, None]) * rstd_t[None, :, None]
        y = y.reshape(shape)
        if norm.affine:
            y = y * norm.weight.float()[None, :, None, None] + norm.bias.float()[None, :, None, None]
        return y.to(x.dtype)

    @contextmanager
    def _swapped(self, forward_for) -> Iterator[None]:
        calls = iter(range(len(self.norms)))
        for norm in self.norms:
            norm.forward = forward_for(norm, calls)
        try:
            yield
        finally:
            for norm in self.norms:
                del norm.forward

    def _shared_norms(self, window_h: int, core: Window, known: Sequence[np.ndarray], probe: int | None):
        def forward_for(norm, calls):
            def forward(x):
                index = next(calls)
                if index == probe:
                    s = x.shape[-2] // window_h  # this layer's pixels per latent pixel
                    owned = x[:, :, core.y * s : (core.y + core.h) * s, core.x * s : (core.x + core.w) * s]
                    raise _Probed(self._moments(norm, owned))
                return self._normalise(norm, x, known[index])

            return forward

        return self._swapped(forward_for)

    def _recording(self, recorded: list[np.ndarray]):
        def forward_for(norm, calls):
            def forward(x):
                next(calls)
                stats = self._moments(norm, x)
                recorded.append(stats)
                return self._normalise(norm, x, stats)

            return forward

        return self._swapped(forward_for)

    # -- what the tail is made of -----------------------------------------------------------

    def _check_tail(self) -> None:
        """Refuse a VAE whose tail mixes pixels globally: tiles could not compute it exactly."""
        from diffusers.models.attention_processor import Attention

        tail = [*self.decoder.up_blocks.modules(), self.decoder.conv_norm_out, self.decoder.conv_out]
        if any(isinstance(module, Attention) for module in tail):
            raise ValueError("this VAE has attention past its mid-block; the seamless decode cannot tile it")
        if getattr(self.decoder, "conv_norm_out", None) is None or not isinstance(
            self.decoder.conv_norm_out, self.torch.nn.GroupNorm
        ):
            raise ValueError("this VAE's decoder has no GroupNorm output layer; the seamless decode expects diffusers' Decoder")

    def _trace(self) -> tuple[list[Any], int]:
        """The tail's GroupNorms in call order and its receptive radius in latent pixels.

        One call on a 4x4 input records both: each conv of kernel k at s pixels per latent pixel
        reaches (k - 1) / 2 / s latent pixels further; the halo is their sum, rounded up. Order
        comes from the calls, not from module registration, which need not match the forward.
        """
        torch = self.torch
        norms: list[Any] = []
        reach = [0.0]
        size = 4
        hooks = []

        def on_norm(module, args):
            norms.append(module)

        def on_conv(module, args):
            s = args[0].shape[-2] / size
            k = module.kernel_size[0]
            reach[0] += (k - 1) / 2 * module.dilation[0] / s

        tail = [self.decoder.up_blocks, self.decoder.conv_norm_out, self.decoder.conv_out]
        for part in tail:
            for module in part.modules():
                if isinstance(module, torch.nn.GroupNorm):
                    hooks.append(module.register_forward_pre_hook(on_norm))
                elif isinstance(module, torch.nn.Conv2d):
                    hooks.append(module.register_forward_pre_hook(on_conv))
        try:
            x = torch.zeros(1, self.head_channels, size, size, device=self.device, dtype=self.dtype)
            with torch.inference_mode():
                self._tail(x)
        finally:
            for hook in hooks:
                hook.remove()
        if len(set(map(id, norms))) != len(norms):
            raise ValueError("a GroupNorm of this VAE's decoder runs twice; the seamless decode cannot order its statistics")
        return norms, math.ceil(reach[0] - 1e-9)

    def head_bytes(self, height: int, width: int) -> int:
        """About the head's peak activation memory for an (height, width) latent, in bytes: the
        one stage whose memory grows with the canvas (a few mid-block activations at once)."""
        itemsize = self.torch.empty((), dtype=self.dtype).element_size()
        return 4 * self.head_channels * height * width * itemsize


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(3, H, W) pixels in [-1, 1] to (H, W, 3) uint8, rounding exactly as diffusers does."""
    unit = np.clip(pixels / np.float32(2) + np.float32(0.5), 0, 1)
    return np.ascontiguousarray((unit * 255).round().astype(np.uint8).transpose(1, 2, 0))


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
