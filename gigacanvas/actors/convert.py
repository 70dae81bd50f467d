"""`gigacanvas convert`: write an SD3 transformer as one safetensors file in a chosen precision.

An FP8 file loads in half of bf16's memory and time and is what `--precision fp8
--strict-precision` insists on. Its metadata names the format, the precision, the scale spelling,
the source's fingerprint and the transformer config (so the file carries its own architecture).
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

from gigacanvas.actors.checkpoint import iter_tensors, write_checkpoint
from gigacanvas.actors.loading import open_model, quiet_libraries, transformer_source
from gigacanvas.actors.precision import is_fp8_layer
from gigacanvas.errors import UsageError


def convert_transformer(
    src: str, dst: str, precision: str = "fp8", scale_name: str = "weight_scale", base_model: str | None = None
) -> Path:
    """Convert `src` (an SD3 folder, hub id, or transformer file with `base_model`) to `dst`."""
    quiet_libraries()
    import torch
    from accelerate import init_empty_weights
    from diffusers import SD3Transformer2DModel

    from gigacanvas import __version__

    out = Path(dst)
    if out.suffix != ".safetensors":
        raise UsageError(f"output {dst} must end in .safetensors")
    if not out.parent.is_dir():
        raise UsageError(f"output {dst}: folder {out.parent} does not exist")
    info = open_model(src, base_model)
    checkpoints, config = transformer_source(Path(info.path), info.transformer_file)
    with init_empty_weights():
        model = SD3Transformer2DModel.from_config(config)
    linear = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and is_fp8_layer(name)
    }
    tensors = chain.from_iterable(iter_tensors(c, lambda key: torch.float32) for c in checkpoints)
    metadata = {
        "source_fingerprint": info.fingerprint,
        "scale_name": scale_name,
        "transformer_config": json.dumps(dict(config)),
        "gigacanvas_version": __version__,
    }
    return write_checkpoint(tensors, linear, out, precision, scale_name, metadata)
