"""`--upscaler` files (actors/upscaler.py), the spandrel import (actors/spandrelshim.py) and the
encode's window made by the model (actors/vaeencode.py): no Ray.

The models are spandrel's own architectures with random weights, small enough to build in
milliseconds: an ESRGAN (8 filters, 1 block, 4x) and a RealESRGAN Compact (8 features, 2 convs, 2x).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from gigacanvas.actors.spandrelshim import _stand_in, import_spandrel
from gigacanvas.actors.upscaler import check_upscaler, load_upscaler
from gigacanvas.errors import UsageError
from tests.actors.upscalerfiles import compact, esrgan, save_model


def test_spandrel_recognises_esrgan_and_compact_and_the_plan_line_says_what_they_are(tmp_path):
    four = check_upscaler(esrgan(tmp_path / "4x-tiny.safetensors"))
    assert (four.architecture, four.scale, len(four.fingerprint)) == ("ESRGAN", 4, 16)
    assert four.describe().startswith("ESRGAN 4x (4x-tiny.safetensors, 0.2 M params, fingerprint ")
    two = check_upscaler(compact(tmp_path / "2x.safetensors"))
    assert (two.architecture, two.scale) == ("RealESRGAN Compact", 2) and two.fingerprint != four.fingerprint
    assert two.params == sum(v.numel() for v in _tensors(tmp_path / "2x.safetensors").values())


def _tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def _bad(tmp_path, which: str) -> str:
    import torch
    from safetensors.torch import save_file

    if which == "pickle":
        (tmp_path / "m.pth").write_bytes(b"not opened")
        return str(tmp_path / "m.pth")
    if which == "missing":
        return str(tmp_path / "nowhere.safetensors")
    if which == "folder":
        (tmp_path / "dir.safetensors").mkdir()
        return str(tmp_path / "dir.safetensors")
    if which == "garbage":
        (tmp_path / "g.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{nope}  ")
        return str(tmp_path / "g.safetensors")
    if which == "unknown":
        save_file({"some.weight": torch.zeros(3, 3)}, str(tmp_path / "u.safetensors"))
        return str(tmp_path / "u.safetensors")
    if which == "denoiser":  # a Compact of scale 1: spandrel's purpose Restoration
        return compact(tmp_path / "1x.safetensors", upscale=1)
    if which == "grey":
        return save_model(tmp_path / "grey.safetensors", "esrgan", in_nc=1, out_nc=1, num_filters=8, num_blocks=1, scale=2)
    if which == "url":
        return "https://example.com/4x.safetensors"
    if which == "empty":
        return " "
    raise AssertionError(which)


BAD = [
    ("pickle", "is a pickle file (.pth), refused because loading it can run code; convert it to .safetensors"),
    ("missing", "does not exist; pass an upscale model's .safetensors file"),
    ("folder", "is not a regular file (a folder, FIFO or device)"),
    ("garbage", "is not a readable safetensors file"),
    ("unknown", "is no architecture spandrel 0.4.2 recognises"),
    ("denoiser", "is RealESRGAN Compact (purpose Restoration, 1x, 3 to 3 channels), not a super-resolution model"),
    ("grey", "is ESRGAN (purpose SR, 2x, 1 to 1 channels); an upscaler must take and give RGB"),
    ("url", "upscale models are read from local files only"),
    ("empty", "upscaler is empty; pass an upscale model's .safetensors file"),
]


@pytest.mark.parametrize("which, message", BAD, ids=[b[0] for b in BAD])
def test_each_bad_upscaler_is_refused_in_one_line(which, message, tmp_path):
    with pytest.raises(UsageError) as caught:
        check_upscaler(_bad(tmp_path, which))
    assert message in str(caught.value) and "\n" not in str(caught.value), caught.value


def test_without_spandrel_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = esrgan(tmp_path / "4x.safetensors")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # `import spandrel` raises ModuleNotFoundError
    with pytest.raises(UsageError, match=r"--upscaler needs the spandrel library: pip install 'gigacanvas\[upscalers\]'"):
        check_upscaler(path)


def test_the_stand_in_torchvision_answers_no_dunder_and_fails_only_when_called():
    module = _stand_in("torchvision.transforms.functional")
    with pytest.raises(AttributeError):
        module.__file__  # noqa: B018 - inspect asks this
    placeholder = module.normalize
    assert placeholder.anything.at_all is placeholder
    with pytest.raises(AttributeError):
        placeholder.__wrapped__  # noqa: B018
    with pytest.raises(ImportError, match="torchvision.transforms.functional.normalize needs torchvision"):
        placeholder(1)


class _BrokenTorchvision:
    """A meta path finder whose torchvision fails as PyPI's does beside a torch it was not built for."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")


@pytest.mark.parametrize("torchvision", ["missing", "broken"])
def test_spandrel_imports_afresh_and_leaves_no_torchvision_behind(torchvision, monkeypatch):
    """A first import (spandrel's modules dropped for the test, then put back): the stand-ins are
    in place only while spandrel imports, where torchvision is missing or fails to import."""
    import_spandrel()
    for name in [n for n in sys.modules if n == "spandrel" or n.startswith("spandrel.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test: the classes stay the ones in use
    before = {n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")}
    if torchvision == "broken":
        monkeypatch.setattr(sys, "meta_path", [_BrokenTorchvision(), *sys.meta_path])
        for name in before:
            monkeypatch.delitem(sys.modules, name)
        before = set()
    else:
        monkeypatch.setitem(sys.modules, "torchvision", None)  # `import torchvision` raises ModuleNotFoundError
        before = {"torchvision"}
    fresh = import_spandrel()
    assert fresh is sys.modules["spandrel"] and len(fresh.MAIN_REGISTRY.architectures()) >= 40
    assert {n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")} == before
    assert sys.modules.get("torchvision") is None


def test_the_encode_window_is_the_model_on_its_crop_then_lanczos_of_that(tmp_path):
    """Pinned: the window's pixels are the model's output (float32 in [0, 1], clamped, rounded)
    for the crop `source_crop` names, resized by `resize_window` placed in the whole upscale;
    not LANCZOS's window alone; on a torus the crop is gathered across the join."""
    import torch

    from gigacanvas.actors.vaeencode import (
        UPSCALER_CONTEXT_PX,
        encode_window,
        halo_window,
    )
    from gigacanvas.tiling.grid import Window
    from gigacanvas.tiling.resample import gather, resize_window, source_crop

    path = compact(tmp_path / "2x.safetensors")
    up = load_upscaler(path, check_upscaler(path).fingerprint, "cpu")
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    seen = []

    def encode(pixels, circular):  # the VAE stand-in: hands back what it was given, at the latent's size
        seen.append(pixels[0])
        return pixels[:, :, ::8, ::8]

    for wrap, window in (((False, False), Window(2, 3, 6, 8)), ((True, True), Window(9, 12, 6, 8))):
        encode_window(encode, image, (160, 224), window, 2, 8, wrap, up)
        lat = halo_window(window, 2, 20, 28, wrap)[0]
        grown = Window(lat.y * 8, lat.x * 8, lat.h * 8, lat.w * 8)  # what the encode sees, in canvas pixels
        crop = source_crop(40, 56, 160, 224, grown, UPSCALER_CONTEXT_PX, 2, wrap)
        with torch.inference_mode():
            x = torch.from_numpy(gather(image, crop)).permute(2, 0, 1)[None].float() / 255.0
            y = (up.descriptor(x).clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        want = resize_window(y, 160, 224, grown, origin=(crop.y * 2, crop.x * 2), full=(80, 112))
        got = np.round((seen[-1].transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8)
        np.testing.assert_array_equal(got, want)
        lanczos = resize_window(image, 160, 224, grown, wrap)
        assert np.abs(got.astype(int) - lanczos).mean() > 5  # the model made them, not LANCZOS alone


def test_an_actor_loads_the_upscaler_once_and_refuses_a_file_that_changed(tmp_path):
    path = compact(tmp_path / "2x.safetensors")
    planned = check_upscaler(path).fingerprint
    first = load_upscaler(path, planned, "cpu")
    assert load_upscaler(path, planned, "cpu") is first
    other = tmp_path / "other.safetensors"
    esrgan(other)
    with pytest.raises(UsageError, match="on node 7 is not the file the render was planned with"):
        load_upscaler(str(other), "0123456789abcdef", "cpu", "node 7")
