"""`import spandrel` on a machine without torchvision: the one way gigacanvas imports spandrel.

spandrel (the library ComfyUI and chaiNNer load upscale models with) imports every architecture
it knows when it is imported, and two of them, RestoreFormer (a face restorer) and LaMa (an
inpainter), import torchvision at module level. No upscaler needs torchvision, but a torchvision
must match its torch build exactly, and none on PyPI imports beside the CPU torch 2.13.0 that the
Makefile installs ('operator torchvision::nms does not exist'; the other choice is a 5.5 GB CUDA
torch). So spandrel is installed with `--no-deps` there, and imported here with stand-ins for the
three torchvision modules those two architectures name, present only while spandrel imports:
nothing else in the process ever sees a fake torchvision (a later `import torchvision` fails as
it would have). A stand-in's attributes are `_Missing` placeholders that raise ImportError when
called, so RestoreFormer or LaMa fail in one line if ever run; gigacanvas refuses them anyway
(actors/upscaler.py takes super-resolution models only). Where torchvision imports (a user's
machine with the `upscalers` extra), spandrel is imported plainly; where one is installed but
fails to import (built for another torch: a RuntimeError, not a ModuleNotFoundError), the
stand-ins serve as if it were missing, since spandrel's import would fail on it otherwise.

torch is imported first, before any stand-in exists: torch itself probes for torchvision in places,
and must find the truth.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from gigacanvas.errors import UsageError

STUBBED = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
INSTALL_HINT = (
    "--upscaler needs the spandrel library: pip install 'gigacanvas[upscalers]' where torchvision installs beside "
    "your torch, else pip install einops && pip install --no-deps 'spandrel==0.4.2'"
)


class _Missing:
    """What a stand-in torchvision hands out: any attribute of it is itself, a call raises ImportError."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"{self._name} needs torchvision, which is not installed")


def _stand_in(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def __getattr__(attr: str) -> Any:  # inspect and importlib look up __file__, __path__, ...: none here
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return _Missing(f"{name}.{attr}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def import_spandrel() -> Any:
    """The spandrel module, imported once (with stand-ins if torchvision is missing); a UsageError
    saying how to install it when spandrel is not importable at all."""
    if sys.modules.get("spandrel") is not None:
        return sys.modules["spandrel"]
    import torch  # noqa: F401 - before any stand-in exists (module docstring)

    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or built for another torch: 'operator torchvision::nms does not exist'
        return _import_with_stand_ins()
    return _import_plainly()


def _import_plainly() -> Any:
    try:
        import spandrel
    except ModuleNotFoundError as exc:
        raise UsageError(f"{INSTALL_HINT} ({exc})") from None
    return spandrel


def _import_with_stand_ins() -> Any:
    saved = {name: sys.modules[name] for name in STUBBED if name in sys.modules}  # a None entry too
    for name in STUBBED:
        sys.modules[name] = _stand_in(name)
    try:
        return _import_plainly()
    finally:
        for name in STUBBED:
            if name in saved:
                sys.modules[name] = saved[name]
            else:
                sys.modules.pop(name, None)
