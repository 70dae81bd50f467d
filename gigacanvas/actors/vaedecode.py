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
That is exact and holds one tile at a time. So that pass k need not run the tail from the
mid-block again, `run` starts at any up-block's input (a boundary) from checkpointed cores of it
(tiling/decodepasses.py): each pass runs about one up-block instead of the tail's
whole front. The fast mode (`plan_fast`) gathers only the first up-block's statistics so and
estimates the rest with `sample`: a batch of crops spread over the canvas run through the rest of
the tail at once, each GroupNorm pooling its moments over their cores.

On a torus (`--wrap`), every conv of the decoder pads circularly across the joined edges for the
duration of a call (`_circular`, actors/circular.py: the same weights, the padding done by hand because a Conv2d's
own `padding_mode` cannot wrap one axis and zero-pad the other): the head on the whole latent,
the one-piece decode, and the fast mode's crops along an axis they span whole. Tiles need nothing: their windows carry
the halo across the edge (tiling/decodetiles.py), so zero padding at a window's edge never
reaches its core. The mid-block's global attention needs nothing either; its windowed form for
latents past EXACT_ATTENTION_PIXELS does not wrap its windows (an approximation already).

The decoder is never forked or copied: its modules, weights and forward order are diffusers'; the
tail's forward below repeats the four lines of `Decoder.forward` after the mid-block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from gigacanvas.actors.windowed import WindowedAttention
from gigacanvas.tiling.decodepasses import CHECKPOINT_BUDGET, SAMPLE_CORE, TailLayout, plan_fast, plan_passes
from gigacanvas.tiling.decodetiles import crop_padding, paste, plan_decode_tiles, sample_crops
from gigacanvas.tiling.grid import Window
from gigacanvas.tiling.groupstats import group_moments, mean_and_variance, merge, weighted

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
        self.norms, self.layout = self._trace()
        self.halo = self.layout.halo(0, self.layout.segments - 1)
        self.norm_count = len(self.norms)

    # -- the two stages --------------------------------------------------------------------

    def head(self, latent: np.ndarray, wrap: tuple[bool, bool] = (False, False)) -> np.ndarray:
        """(C, h, w) latent (as the sampler left it) to the mid-block's (C', h, w) float32 output;
        `wrap` (rows, columns): pad circularly along those axes."""
        torch = self.torch
        vae = self.vae
        z = torch.from_numpy(np.ascontiguousarray(latent))[None].to(self.device, self.dtype)
        with torch.inference_mode(), self._circular(wrap):
            z = z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
            if vae.post_quant_conv is not None:
                z = vae.post_quant_conv(z)
            with self._windowed_attention(z.shape[-2] * z.shape[-1] > EXACT_ATTENTION_PIXELS):
                x = self.decoder.mid_block(self.decoder.conv_in(z), None)
        return x[0].float().cpu().numpy()

    def _circular(self, wrap: tuple[bool, bool]):
        """Every padded conv of the VAE pads circularly along the wrapped axes (rows, columns) and
        with zeros along the others, as `padding_mode="circular"` would on a torus (actors/circular.py)."""
        from gigacanvas.actors.circular import circular_padding

        return circular_padding(self.vae, wrap)

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

    def _tail(self, x: Any, start: int = 0, end: int | None = None) -> Any:
        """Segments start..end (up-blocks; the last one ends with diffusers' four output lines)."""
        decoder = self.decoder
        last = len(decoder.up_blocks) - 1
        end = last if end is None else end
        for up_block in decoder.up_blocks[start : end + 1]:
            x = up_block(x, None)
        if end < last:
            return x
        x = decoder.conv_norm_out(x)
        x = decoder.conv_act(x)
        return decoder.conv_out(x)

    def tail(
        self,
        window: np.ndarray,
        core: Window,
        known: Sequence[np.ndarray] | None,
        probe: int | None = None,
        wrap: tuple[bool, bool] = (False, False),
    ) -> np.ndarray:
        """Run the whole tail on a (C', h, w) window of the head's output (`run` from boundary 0)."""
        return self.run(window, core, 0, self.layout.segments - 1, known, probe, wrap)

    def run(
        self,
        window: np.ndarray,
        core: Window,
        start: int,
        end: int,
        known: Sequence[np.ndarray] | None,
        probe: int | None = None,
        wrap: tuple[bool, bool] = (False, False),
    ) -> np.ndarray:
        """Run segments start..end on a window of boundary `start`'s activations.

        `core` is the owned part, relative to the window, in latent pixels. With `probe` k, stop
        at GroupNorm k (statistics of every earlier one in `known`) and return its (groups, 3)
        moments over the core; without, the core's float32 activations at boundary end + 1 come
        back, or past the last segment its (3, h*s, w*s) pixels in [-1, 1]. `known` None: the
        window is the whole canvas and normalises with its own statistics (one call for the
        whole decode instead of a pass per GroupNorm), padded circularly along `wrap`'s axes; a
        tile's window already holds its halo across a joined edge and pads with zeros.
        """
        torch = self.torch
        layout = self.layout
        last = layout.segments - 1
        window_h = window.shape[-2] // layout.scales[start]
        first = layout.first_norm(start)
        if known is None:  # one tile, the whole canvas: its own statistics are the canvas's
            if probe is not None or (start, end) != (0, last) or tuple(core) != (0, 0, *window.shape[-2:]):
                raise ValueError("only a tile that is the whole canvas decodes with its own statistics")
            norms = self._recording([])
        else:
            wrap = (False, False)
            needed = sum(1 for s in layout.norm_segments if s <= end) if probe is None else probe
            if len(known) < needed or (probe is not None and not first <= probe < len(self.norms)):
                raise ValueError(f"probe {probe} needs statistics for {needed} GroupNorms; got {len(known)}")
            if probe is not None and layout.norm_segments[probe] > end:
                raise ValueError(f"GroupNorm {probe} runs past segment {end}")
            norms = self._shared_norms(window_h, core, known, probe, first)
        x = torch.from_numpy(np.ascontiguousarray(window))[None].to(self.device, self.dtype)
        with torch.inference_mode(), norms, self._circular(wrap):
            try:
                out = self._tail(x, start, end)
            except _Probed as probed:
                return probed.moments
        s = self.scale if end == last else layout.scales[end + 1]
        y, x0 = core.y * s, core.x * s
        return out[0, :, y : y + core.h * s, x0 : x0 + core.w * s].float().cpu().numpy()

    def sample(
        self,
        windows: np.ndarray,
        pieces: Sequence[Sequence[tuple[Window, float]]],
        start: int,
        known: Sequence[np.ndarray],
        wrap: tuple[bool, bool] = (False, False),
    ) -> list[np.ndarray]:
        """The fast mode's estimate: the moments of every GroupNorm past `known`, pooled over a
        batch of crops (N, C', h, w) of boundary `start`'s activations run together from `start`
        to the end (tiling/decodetiles.py's `sample_crops`: for each crop, the pieces of its core,
        relative to its window in latent pixels, with their weights).

        GroupNorms already in `known` normalise with those statistics; each later one with the
        weighted moments it gathers over every piece at once, so the crops stand for the canvas
        layer by layer as the tiles of the exact decode do, only fewer of them. `wrap`: pad
        circularly along those axes (crops that span a wrapped axis whole)."""
        torch = self.torch
        first = self.layout.first_norm(start)
        window_h = windows.shape[-2] // self.layout.scales[start]
        recorded: list[np.ndarray] = []

        def forward_for(norm, calls):
            def forward(x):
                index = next(calls)
                if index < len(known):
                    return self._normalise(norm, x, known[index])
                s = x.shape[-2] // window_h  # this layer's pixels per latent pixel
                stats = merge(
                    weighted(self._moments(norm, x[i, :, p.y * s : (p.y + p.h) * s, p.x * s : (p.x + p.w) * s]), w)
                    for i, crop in enumerate(pieces)
                    for p, w in crop
                )
                recorded.append(stats)
                return self._normalise(norm, x, stats)

            return forward

        x = torch.from_numpy(np.ascontiguousarray(windows)).to(self.device, self.dtype)
        with torch.inference_mode(), self._swapped(forward_for, first), self._circular(wrap):
            self._tail(x, start)
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
    def _swapped(self, forward_for, first: int = 0) -> Iterator[None]:
        calls = iter(range(first, len(self.norms)))
        for norm in self.norms:
            norm.forward = forward_for(norm, calls)
        try:
            yield
        finally:
            for norm in self.norms:
                del norm.forward

    def _shared_norms(self, window_h: int, core: Window, known: Sequence[np.ndarray], probe: int | None, first: int):
        def forward_for(norm, calls):
            def forward(x):
                index = next(calls)
                if index == probe:
                    s = x.shape[-2] // window_h  # this layer's pixels per latent pixel
                    owned = x[:, :, core.y * s : (core.y + core.h) * s, core.x * s : (core.x + core.w) * s]
                    raise _Probed(self._moments(norm, owned))
                return self._normalise(norm, x, known[index])

            return forward

        return self._swapped(forward_for, first)

    def _recording(self, recorded: list[np.ndarray], first: int = 0):
        def forward_for(norm, calls):
            def forward(x):
                next(calls)
                stats = self._moments(norm, x)
                recorded.append(stats)
                return self._normalise(norm, x, stats)

            return forward

        return self._swapped(forward_for, first)

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

    def _trace(self) -> tuple[list[Any], TailLayout]:
        """The tail's GroupNorms in call order and its layout (tiling/decodetiles.py's TailLayout).

        One call on a 4x4 input records both: each conv of kernel k at s pixels per latent pixel
        reaches (k - 1) / 2 / s latent pixels further, added to the segment it runs in. Order
        comes from the calls, not from module registration, which need not match the forward.
        """
        torch = self.torch
        norms: list[Any] = []
        segments: list[int] = []
        reach: list[float] = []
        channels: list[int] = []
        scales: list[int] = []
        size = 4
        hooks = []

        def on_block(module, args):
            reach.append(0.0)
            channels.append(args[0].shape[1])
            scales.append(args[0].shape[-2] // size)

        def on_norm(module, args):
            norms.append(module)
            segments.append(len(reach) - 1)

        def on_conv(module, args):
            s = args[0].shape[-2] / size
            k = module.kernel_size[0]
            reach[-1] += (k - 1) / 2 * module.dilation[0] / s

        for block in self.decoder.up_blocks:
            hooks.append(block.register_forward_pre_hook(on_block))
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
        return norms, TailLayout(tuple(segments), tuple(reach), tuple(channels), tuple(scales))

    def head_bytes(self, height: int, width: int) -> int:
        """About the head's peak activation memory for an (height, width) latent, in bytes: the
        one stage whose memory grows with the canvas (a few mid-block activations at once)."""
        itemsize = self.torch.empty((), dtype=self.dtype).element_size()
        return 4 * self.head_channels * height * width * itemsize


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """(3, H, W) pixels in [-1, 1] to (H, W, 3) uint8, rounding exactly as diffusers does."""
    unit = np.clip(pixels / np.float32(2) + np.float32(0.5), 0, 1)
    return np.ascontiguousarray((unit * 255).round().astype(np.uint8).transpose(1, 2, 0))


def decode_in_tiles(
    stages: SeamlessVae,
    latent: np.ndarray,
    core: int,
    side: int | None = None,
    budget: int = CHECKPOINT_BUDGET,
    wrap: tuple[bool, bool] = (False, False),
    sample_core: int = SAMPLE_CORE,
) -> np.ndarray:
    """(3, H * s, W * s) pixels of a (C, H, W) latent decoded in this process as the cluster
    decodes it (cluster/decode.py): tiles of `core` latent pixels, the exact passes, or with
    `side` the fast mode's (statistics estimated from crops of at most `side` squared latent
    pixels of window in all, cores of `sample_core`), on a torus along `wrap`'s axes (rows,
    columns). For tests and benchmarks."""
    height, width = latent.shape[1:]
    layout = stages.layout
    last = layout.segments - 1
    torus = (height if wrap[0] else None, width if wrap[1] else None)
    head = stages.head(latent, wrap)
    if len(plan_decode_tiles(height, width, core, 0)) == 1:
        return stages.tail(head, Window(0, 0, height, width), None, wrap=wrap)
    if side is None:
        plan = plan_passes(layout, height, width, budget)
    else:
        plan = plan_fast(layout, height, width, budget)
    known: list[np.ndarray] = []
    parts = [(Window(0, 0, height, width), head)]
    pixels = np.full((3, height * stages.scale, width * stages.scale), np.nan, np.float32)
    for step in plan:
        scale = layout.scales[step.start]
        if step.sample:
            crops = sample_crops(height, width, sample_core, layout.halo(step.start, step.end), side * side, *wrap)
            windows = np.stack([paste(c.window, parts, scale, *torus) for c in crops])
            pieces = [c.pieces for c in crops]
            known += stages.sample(windows, pieces, step.start, known, crop_padding(crops, height, width, *wrap))
            continue
        tiles = plan_decode_tiles(height, width, core, layout.halo(step.start, step.end), *wrap)
        got = [
            stages.run(paste(t.window, parts, scale, *torus), t.core_in_window, step.start, step.end, known, step.probe)
            for t in tiles
        ]
        if step.probe is not None:
            known.append(merge(got))
        elif step.end < last:
            if step.keep:
                parts = [(t.core, values) for t, values in zip(tiles, got)]
        else:
            s = stages.scale
            for t, values in zip(tiles, got):
                pixels[:, t.core.y * s : (t.core.y + t.core.h) * s, t.core.x * s : (t.core.x + t.core.w) * s] = values
    return pixels
