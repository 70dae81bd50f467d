"""Tiny random-weight upscale models for the `--upscaler` tests, built from spandrel's own architectures."""

from __future__ import annotations

from gigacanvas.actors.spandrelshim import import_spandrel


def save_model(path, arch: str, **kwargs) -> str:
    """A random-weight spandrel model of `arch` saved as safetensors at `path`."""
    import torch
    from safetensors.torch import save_file

    import_spandrel()
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    with torch.random.fork_rng(devices=[]):  # the same weights every time, the test's own RNG untouched
        torch.manual_seed(0)
        model = {"esrgan": ESRGAN, "compact": Compact}[arch](**kwargs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def esrgan(path) -> str:
    return save_model(path, "esrgan", in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)


def compact(path, upscale: int = 2) -> str:
    return save_model(path, "compact", num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=upscale)
