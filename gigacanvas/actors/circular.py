"""Circular padding for a diffusers AutoencoderKL on a torus (`--wrap`), for the duration of a call.

A Conv2d's own `padding_mode="circular"` wraps both axes at once; a canvas wrapped along one
axis must wrap that one and zero-pad the other, so the padding is done by hand here: every conv
that pads is given a forward that pads circularly along the wrapped axes (rows, columns) and with
zeros along the others, then convolves with the same weights and no padding of its own. The
encoder's `Downsample2D` (padding 0) pads one zero row and column at the bottom and right itself
before its stride-2 conv; on a torus that row and column are the first ones, so it is wrapped too.
The decode (actors/vaedecode.py) and the refinement's encode (actors/vaeencode.py) share this, so
both see the joined edges as the same neighbourhood. Nothing is copied: the modules, weights and
forward order stay diffusers'; the patched forwards are removed on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def circular_padding(vae: Any, wrap: tuple[bool, bool]) -> Iterator[None]:
    """Within the block, `vae`'s padded convs (and the encoder's bottom-right downsampling pad)
    wrap along `wrap`'s axes (rows, columns); nothing changes when neither is wrapped."""
    if not any(wrap):
        yield
        return
    import torch
    import torch.nn.functional as F
    from diffusers.models.downsampling import Downsample2D

    def pad(x: Any, top: int, bottom: int, left: int, right: int) -> Any:
        x = F.pad(x, (left, right, 0, 0), mode="circular" if wrap[1] else "constant")
        return F.pad(x, (0, 0, top, bottom), mode="circular" if wrap[0] else "constant")

    convs = [m for m in vae.modules() if isinstance(m, torch.nn.Conv2d) and any(m.padding)]
    downs = [m for m in vae.modules() if isinstance(m, Downsample2D) and m.use_conv and m.padding == 0]
    if any(isinstance(conv.padding, str) or conv.padding_mode != "zeros" for conv in convs):
        raise ValueError("this VAE has convs with their own padding mode; the wrapped VAE expects zero padding")
    if any(down.norm is not None for down in downs):
        raise ValueError("this VAE normalises before it downsamples; the wrapped encode expects no norm there")

    def conv_forward(conv: Any):
        ph, pw = conv.padding

        def forward(x: Any) -> Any:
            return F.conv2d(pad(x, ph, ph, pw, pw), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

        return forward

    def down_forward(down: Any):
        def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
            return down.conv(pad(x, 0, 1, 0, 1))  # diffusers pads (0, 1, 0, 1) with zeros here

        return forward

    patched = [*convs, *downs]
    for conv in convs:
        conv.forward = conv_forward(conv)
    for down in downs:
        down.forward = down_forward(down)
    try:
        yield
    finally:
        for module in patched:
            del module.forward
