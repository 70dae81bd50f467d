"""`--upscaler FILE`: an ESRGAN-family upscale model, checked at planning, run on every actor.

spandrel (the library ComfyUI's 'Load Upscale Model' uses) recognises the architecture from the
state dict alone and builds the model, so gigacanvas names no architecture and converts no key.
Accepted: local `.safetensors` files whose model spandrel sees as an image model for super-
resolution (purpose 'SR') from 3 channels to 3. A pickle (.pth, .ckpt, .bin, ...) is refused: a
downloaded one could run code when loaded, and `safetensors.torch.load_file` reads tensors only.
A face restorer, an inpainter or a denoiser (spandrel purposes 'FaceSR', 'Inpainting',
'Restoration') is refused in one line naming what spandrel recognised: upscaling is what the
refinement's first picture needs, and another purpose would change it in other ways.

An actor runs the model in float32 on its device (eval mode, under `torch.inference_mode`), input
RGB in [0, 1], output clamped to [0, 1] and rounded to uint8, as ComfyUI's 'Upscale Image (using
Model)' does; the model is loaded once per process, cached by its content fingerprint, and the file
is checked against the plan's fingerprint first (another node's copy might differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gigacanvas.actors.localfile import local_weights_file
from gigacanvas.actors.spandrelshim import import_spandrel
from gigacanvas.errors import UsageError

CHANNELS = 3  # RGB in, RGB out: what the encode takes


@dataclass(frozen=True)
class UpscalerFile:
    """A checked upscale model: the local file (resolved), its content fingerprint and what it is."""

    path: str
    fingerprint: str
    architecture: str  # spandrel's name for it: ESRGAN, RealESRGAN Compact, SwinIR, ...
    scale: int  # the model's output side over its input's
    params: int

    def describe(self) -> str:
        """'ESRGAN 4x (4x-UltraSharp.safetensors, 16.7 M params, fingerprint 0123456789abcdef)'."""
        return (
            f"{self.architecture} {self.scale}x ({Path(self.path).name}, {self.params / 1e6:.1f} M params, "
            f"fingerprint {self.fingerprint})"
        )


def check_upscaler(given: str) -> UpscalerFile:
    """The upscale model at `given` (a local path), checked as the module docstring says and
    fingerprinted; one UsageError line otherwise. Loads the model on the CPU once (a few hundred MB
    at most for ESRGAN-family models): spandrel detects the architecture from the tensors."""
    path = _local_file(given)
    descriptor = _descriptor(path, given)
    return UpscalerFile(
        str(path), _fingerprint(path), descriptor.architecture.name, int(descriptor.scale),
        sum(p.numel() for p in descriptor.model.parameters()),
    )


def _fingerprint(path: Path) -> str:
    from gigacanvas.actors.lora import file_fingerprint  # the LoRAs' helper: 16 hex digits, stat-cached

    return file_fingerprint(path)


def _local_file(given: str) -> Path:
    """`given` as a local regular file that may be a safetensors one, or one line on why not."""
    return local_weights_file(
        given, "upscaler", "upscale models", "an upscale model's .safetensors file",
        "convert it to .safetensors (e.g. chaiNNer's Convert Model, or safetensors.torch.save_file of its state dict)",
    )


def _descriptor(path: Path, given: str) -> Any:
    """spandrel's ImageModelDescriptor for the file, refused unless it is a 3-to-3-channel SR model."""
    spandrel = import_spandrel()  # one line on how to install it, before the file is read
    state = _read(path, given)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UsageError(
            f"upscaler {given} is no architecture spandrel {spandrel.__version__} recognises; pass an ESRGAN-family "
            "upscale model (ESRGAN, RealESRGAN, SwinIR, ...)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a recognised architecture whose tensors do not fit it
        detail = (str(exc).splitlines() or [exc.__class__.__name__])[0][:100]
        raise UsageError(f"upscaler {given} cannot be built by spandrel ({detail})") from None
    what = (
        f"{descriptor.architecture.name} (purpose {descriptor.purpose}, {descriptor.scale}x, "
        f"{descriptor.input_channels} to {descriptor.output_channels} channels)"
    )
    image_model = isinstance(descriptor, spandrel.ImageModelDescriptor)
    if not image_model or descriptor.purpose != "SR" or descriptor.scale < 2:
        raise UsageError(f"upscaler {given} is {what}, not a super-resolution model; pass an upscale model such as ESRGAN")
    if descriptor.input_channels != CHANNELS or descriptor.output_channels != CHANNELS:
        raise UsageError(f"upscaler {given} is {what}; an upscaler must take and give RGB (3 channels)")
    return descriptor


def _read(path: Path, given: str) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: one clear line either way
        detail = (str(exc).splitlines() or [exc.__class__.__name__])[0][:100]
        raise UsageError(f"upscaler {given} is not a readable safetensors file ({detail}); pass a .safetensors model") from None


class Upscaler:
    """A loaded upscale model on one device: (h, w, 3) uint8 in, (h * scale, w * scale, 3) uint8 out."""

    def __init__(self, descriptor: Any, device: str):
        self.descriptor = descriptor.to(device).float().eval()
        self.device = device
        self.scale = int(descriptor.scale)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            y = self.descriptor(x).clamp_(0.0, 1.0)
            out = (y[0].permute(1, 2, 0) * 255.0).round_().to(torch.uint8)
        return np.ascontiguousarray(out.cpu().numpy())


_LOADED: dict[str, Upscaler] = {}  # by fingerprint: each actor process loads its upscaler once


def load_upscaler(path: str, fingerprint: str, device: str, where: str = "this machine") -> Upscaler:
    """The upscaler the plan checked (`path` on the driver, `fingerprint` its content), loaded on
    `device`; refused in one line if the file `where` this runs is missing or holds other bytes."""
    if fingerprint in _LOADED:
        return _LOADED[fingerprint]
    local = _local_file(path)
    found = _fingerprint(local)
    if found != fingerprint:
        raise UsageError(
            f"upscaler {path} on {where} is not the file the render was planned with (fingerprint {found}, "
            f"planned {fingerprint}); put the same file on every node"
        )
    _LOADED.clear()  # one upscaler per render: an earlier one's memory goes back
    _LOADED[fingerprint] = Upscaler(_descriptor(local, path), device)
    return _LOADED[fingerprint]
