"""Tiny LoRA files for the tiny models, built offline in the two formats people download.

- `diffusers_lora`: peft's names under the pipeline's component prefixes
  (`transformer.<layer>.lora_A.weight`, `text_encoder.text_model.<layer>.lora_B.weight`), as
  `save_lora_weights` writes them;
- `kohya_lora`: kohya-ss's names (`lora_unet_<layer with underscores>.lora_down.weight`, `.lora_up`,
  `.alpha`; `lora_te1_`/`lora_te2_` for SDXL's two text encoders), as sd-scripts writes them.

The layers are picked from the model's own modules (its attention projections), so each file fits
the model it was built for; the values are random and large enough to change the output clearly.
"""

from __future__ import annotations

import json
from pathlib import Path

RANK = 4


def _linears(module, suffixes: tuple[str, ...], limit: int):
    import torch

    found = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear) and n.endswith(suffixes)]
    return found[:limit]


def _pair(layer, generator, scale: float = 0.5):
    import torch

    down = torch.randn(RANK, layer.in_features, generator=generator) * scale
    up = torch.randn(layer.out_features, RANK, generator=generator) * scale
    return down, up


def _model_parts(model: str, denoiser: str, encoders: tuple[str, ...]):
    """The components LoRA layers go into, built on the meta device from their configs (the
    names and shapes are all a LoRA file needs; loading weights would cost seconds)."""
    import diffusers
    import transformers
    from accelerate import init_empty_weights

    index = json.loads((Path(model) / "model_index.json").read_text())
    parts = {}
    with init_empty_weights():
        for name in (denoiser, *encoders):
            library, cls = index[name]
            if library == "diffusers":
                parts[name] = getattr(diffusers, cls).from_config(getattr(diffusers, cls).load_config(Path(model) / name))
            else:
                parts[name] = getattr(transformers, cls)._from_config(transformers.AutoConfig.from_pretrained(Path(model) / name))
    return parts


def diffusers_lora(model: str, path: Path, seed: int = 0, text_encoder: bool = True) -> Path:
    """A diffusers-format LoRA for the tiny SD3 model at `model`: the transformer's attention
    projections and (with `text_encoder`) the first CLIP's."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    parts = _model_parts(model, "transformer", ("text_encoder",) if text_encoder else ())
    tensors = {}
    for component, module in parts.items():
        for name, layer in _linears(module, ("to_q", "to_k", "add_q_proj", "q_proj", "v_proj"), 6):
            down, up = _pair(layer, generator)
            tensors[f"{component}.{name}.lora_A.weight"] = down
            tensors[f"{component}.{name}.lora_B.weight"] = up
    save_file(tensors, str(path))
    return path


def kohya_lora(model: str, path: Path, seed: int = 0, alpha: float = 2.0) -> Path:
    """A kohya-format LoRA for the tiny SDXL model at `model`: the UNet's attention projections and
    both text encoders' (`lora_te1_`, `lora_te2_`), with an `alpha` each (scale alpha / rank)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    parts = _model_parts(model, "unet", ("text_encoder", "text_encoder_2"))
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
    tensors = {}
    for component, module in parts.items():
        for name, layer in _linears(module, ("to_q", "to_v", "q_proj", "out_proj"), 6):
            base = prefixes[component] + name.replace(".", "_")
            if component != "unet" and not name.startswith("text_model."):
                base = prefixes[component] + "text_model_" + name.replace(".", "_")
            down, up = _pair(layer, generator)
            tensors[f"{base}.lora_down.weight"] = down
            tensors[f"{base}.lora_up.weight"] = up
            tensors[f"{base}.alpha"] = torch.tensor(alpha)
    save_file(tensors, str(path))
    return path
