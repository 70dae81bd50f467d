"""`gigacanvas convert`: write a model's transformer as one safetensors file in a chosen precision.

An FP8 file loads in half of bf16's memory and time and is what `--precision fp8
--strict-precision` insists on. Its metadata names the format (the family's `checkpoint_format`),
the precision, the scale spelling, the source's fingerprint and the transformer config (so the
file carries its own architecture). Which Linears become FP8 is read from the transformer built
on the meta device from that config, as the family's `transformer_class`.
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path

from gigacanvas.actors import models
from gigacanvas.actors.checkpoint import iter_tensors, transformer_source, write_checkpoint
from gigacanvas.actors.loading import open_model, quiet_libraries
from gigacanvas.actors.precision import is_fp8_layer, skip_patterns
from gigacanvas.errors import UsageError
from gigacanvas.storage.atomic import check_writable_file
from gigacanvas.version import __version__


def convert_transformer(
    src: str, dst: str, precision: str = "fp8", scale_name: str = "weight_scale", base_model: str | None = None
) -> Path:
    """Convert `src` (a model folder, hub id, or transformer file with `base_model`) to `dst`.

    `dst` is checked before the model is read, and must lie outside the model's folder: a file
    written into `transformer/` would become one more shard of the model it came from.
    """
    quiet_libraries()
    import diffusers
    import torch
    from accelerate import init_empty_weights

    out = check_writable_file(dst, "output")
    if out.suffix != ".safetensors":
        raise UsageError(f"output {dst} must end in .safetensors")
    info = open_model(src, base_model)
    if out.resolve().is_relative_to(info.path):
        raise UsageError(f"output {dst} is inside the model folder {info.path}; write it somewhere else")
    family = models.family(info.family)
    if info.weights_precision == "gguf":  # see actors/ggufmodel.py
        raise UsageError(f"model {src} is a GGUF file, already quantised; render it as it is (--model with --base-model)")
    if not family.transformer_class:
        raise UsageError(f"model {src} is a stand-in without weights; there is no transformer to convert")
    checkpoints, config = transformer_source(Path(info.path), info.transformer_file, family)
    with init_empty_weights():
        model = getattr(diffusers, family.transformer_class).from_config(config)
    patterns = skip_patterns(model)
    linear = {
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and is_fp8_layer(name, patterns)
    }
    tensors = chain.from_iterable(iter_tensors(c, lambda key: torch.float32, dict(model.config)) for c in checkpoints)
    metadata = {
        "source_fingerprint": info.fingerprint,
        "scale_name": scale_name,
        "transformer_config": json.dumps(dict(config)),
        "gigacanvas_version": __version__,
    }
    return write_checkpoint(tensors, linear, out, precision, scale_name, metadata, family.checkpoint_format)
