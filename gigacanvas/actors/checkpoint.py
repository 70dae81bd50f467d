"""Transformer checkpoints in safetensors: inspect, load (FP8-scaled included), write.

Files met in the wild, all handled here for every family (its `Family` names the rest):
- the diffusers layout (`<diffusers_blocks>.N...`), as in a pipeline folder or written by `convert`;
- the family's original layout (`<original_blocks>.N...`, maybe under `model.diffusion_model.`,
  maybe a whole checkpoint with VAE and text encoders beside it), mapped with diffusers' own
  converter for the family (`Family.convert_original`);
- float8_e4m3fn weights with a per-tensor scale under either spelling, `<module>.scale_weight`
  (ComfyUI's `*_fp8_scaled` files) or `<module>.weight_scale` (diffusers/torchao), and an optional
  `.scale_input`/`.input_scale` activation hint. The real weight is `fp8 * scale`; a loader that
  drops the scale gives a grey or white picture without an error, so the tests render through
  both spellings and compare against the unscaled model.
- float8_e5m2 weights, recognised and reported (upcast exactly; never read as e4m3).
GGUF files are inspected and loaded by `ggufmodel.py` (dispatched here by suffix); pickle formats
never reach this module (see `loading.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gigacanvas.actors import configs, models
from gigacanvas.actors.configs import read_json
from gigacanvas.actors.models import Family, load
from gigacanvas.errors import UsageError
from gigacanvas.storage.atomic import atomic_path

SCALE_NAMES = ("scale_weight", "weight_scale")
INPUT_SCALE_NAMES = ("scale_input", "input_scale")
MARKERS = ("scaled_fp8",)  # ComfyUI's flag tensor: carries no weights
ORIGINAL_PREFIX = "model.diffusion_model."
FP8_MAX = 448.0  # largest finite float8_e4m3fn
CONVERT_PRECISIONS = ("fp8", "bf16", "fp16", "fp32")
_DTYPE_NAMES = {"F8_E4M3": "fp8", "F8_E5M2": "fp8-e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}


@dataclass(frozen=True)
class CheckpointInfo:
    """What a transformer file holds, read from its header alone."""

    path: str
    family: str  # the Family whose transformer it holds
    layout: str  # "diffusers" or "original"
    precision: str  # "fp8", "fp8-e5m2", "bf16", "fp16", "fp32"
    scale_name: str | None  # which per-tensor scale spelling it uses, if any
    metadata: dict = field(default_factory=dict)

    @property
    def config(self) -> dict | None:
        """The transformer config `convert` embeds, so a file is usable with any base folder."""
        text = self.metadata.get("transformer_config")
        return json.loads(text) if text else None


def _open(path: str | Path):
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: one clear line either way
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UsageError(f"model {path} is not a readable safetensors file ({detail}); is it truncated or corrupt?") from exc


def _is_transformer_key(key: str, layout: str) -> bool:
    return key.startswith(ORIGINAL_PREFIX) or layout == "diffusers" or not key.startswith(
        ("first_stage_model.", "text_encoders.", "cond_stage_model.", "conditioner.")
    )


def inspect_checkpoint(path: str | Path, family: Family) -> CheckpointInfo:
    """Layout, precision and scale spelling of a file of `family`'s transformer; refuses files that aren't one."""
    with _open(path) as f:
        keys = list(f.keys())
        metadata = dict(f.metadata() or {})
        if any(k.startswith(family.diffusers_blocks + ".") for k in keys):
            layout = "diffusers"
        elif any(k.removeprefix(ORIGINAL_PREFIX).startswith(family.original_blocks + ".") for k in keys):
            layout = "original"
            if not family.convert_original:  # refused here, at planning, not on every actor's load
                raise UsageError(
                    f"model {path} holds {family.short} weights in the original layout ({family.original_blocks}...), "
                    "which gigacanvas does not map yet; use a diffusers folder or a file in the diffusers layout"
                )
        else:
            raise UsageError(
                f"model {path} holds no {family.short} transformer weights (no {family.diffusers_blocks} or {family.original_blocks})"
            )
        weights = [k for k in keys if k.endswith(".weight") and _is_transformer_key(k, layout)]
        kinds = {_DTYPE_NAMES.get(f.get_slice(k).get_dtype(), "other") for k in weights}
    scale_name = next((s for s in SCALE_NAMES if any(k.endswith("." + s) for k in keys)), None)
    for precision in ("fp8", "fp8-e5m2", "bf16", "fp16", "fp32"):
        if precision in kinds:
            break
    else:
        raise UsageError(f"model {path} has transformer weights of no float type gigacanvas knows")
    if metadata.get("format") == family.checkpoint_format and metadata.get("precision") not in (None, precision):
        raise UsageError(
            f"model {path} says its precision is {metadata['precision']} but its weights are {precision}; it is damaged"
        )
    return CheckpointInfo(str(path), family.name, layout, precision, scale_name, metadata)


def transformer_files(root: Path, folder: str = "transformer") -> list[Path]:
    """The shards in `folder` (the family's `denoiser`), preferring full files over `.fp16.`-style variants."""
    files = sorted((root / folder).glob("*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1]
    return plain or files


def transformer_source(root: Path, transformer_file: str | Path | None, family: Family):
    """(checkpoints, config) of `family`'s transformer: the single file if given, else the folder's shards.

    A file written by `convert` carries its own config; otherwise the folder's config applies (a
    GGUF's too: see actors/ggufmodel.py).
    """
    from gigacanvas.actors.ggufmodel import inspect_gguf, is_gguf

    sources = [transformer_file] if transformer_file else transformer_files(root, family.denoiser)
    checkpoints = [inspect_gguf(s, family) if is_gguf(s) else inspect_checkpoint(s, family) for s in sources]
    try:
        config = checkpoints[0].config
    except ValueError:
        raise UsageError(f"model {sources[0]} carries a transformer config that is not JSON; it is damaged") from None
    if config is not None:
        return checkpoints, configs.as_object(config, f"transformer config in {sources[0]}")
    return checkpoints, read_json(root / family.denoiser / "config.json", "config")


def load_denoiser(
    model_class: Any, root: Path, transformer_file: str | Path | None, family: Family, precision: str, device: str, what: str,
    loras: tuple = (),
):
    """`family`'s denoiser (`model_class`, e.g. a transformer or a UNet) from the folder's shards or
    a single file, each tensor read straight into its final dtype so that loading an FP8 model
    never holds it in bf16 whole; a checkpoint of another model is one line naming `what`.

    With `loras` (ModelInfo.loras) the tensors are read in the compute dtype, the LoRAs fused into
    them (actors/lora.py), and only then are the FP8-stored layers cast to FP8: the LoRA is in the
    weights that FP8 quantises, at no cost per step."""
    from accelerate import init_empty_weights

    from gigacanvas.actors.ggufmodel import is_gguf, load_gguf
    from gigacanvas.actors.precision import dtype_rule, dtypes

    if is_gguf(transformer_file):  # stays quantised: diffusers' GGUF loader, not a state dict
        return load_gguf(model_class, root, transformer_file, family, precision, device, what)
    checkpoints, config = transformer_source(root, transformer_file, family)
    with init_empty_weights(include_buffers=False):
        model = model_class.from_config(config)
    dtype_for = dtype_rule(model, precision, device)
    compute = dtypes(precision, device)[1]
    read_as = (lambda key: compute) if loras else dtype_for
    state = {k: t for c in checkpoints for k, t in iter_tensors(c, read_as, dict(model.config))}
    source = transformer_file or str(root / family.denoiser)
    try:
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches: a checkpoint of another size of model
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "shape mismatch")
        raise UsageError(f"model {source} does not fit the {what} config ({detail})") from None
    if result.missing_keys or result.unexpected_keys:
        detail = ", ".join((result.missing_keys + result.unexpected_keys)[:3])
        raise UsageError(f"model {source} does not fit the {what} config (mismatched keys: {detail})")
    if loras:
        from gigacanvas.actors.lora import fuse_into_denoiser

        fuse_into_denoiser(model, family, loras)
        for key, tensor in model.state_dict(keep_vars=True).items():  # now the FP8 storage, as without LoRAs
            if tensor.dtype != dtype_for(key):
                tensor.data = tensor.data.to(dtype_for(key))
    return model


def _scales(keys: list[str]) -> tuple[dict[str, str], set[str]]:
    """({weight key: its scale's key}, the keys that hold no weights: scales, input scales, markers)."""
    scales = {}
    for key in keys:
        for name in SCALE_NAMES:
            if key.endswith("." + name):
                scales[key[: -len(name)] + "weight"] = key
    skip = set(scales.values()) | {k for k in keys if k.endswith(tuple("." + n for n in INPUT_SCALE_NAMES))}
    return scales, skip | {k for k in keys if k in MARKERS}


def check_fits(info: CheckpointInfo, config: dict) -> None:
    """Refuse, at planning and from the header alone, a single file whose weights do not fit the
    family's denoiser `config` (built by diffusers: defaults filled): another model's or another
    size's (an SD 1.5 UNet has `input_blocks` too), which would otherwise fail on every actor's load.

    Original-layout keys go through the family's converter on meta tensors (shapes, no bytes): it
    only renames, splits and joins, which meta tensors do; one that fails misses keys it needs.
    """
    import diffusers
    import torch
    from accelerate import init_empty_weights

    family = models.family(info.family)
    with _open(info.path) as f:
        keys = [k for k in f.keys() if _is_transformer_key(k, info.layout)]  # noqa: SIM118 - a safe_open, not a dict
        skip = _scales(keys)[1]
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys if k not in skip}
    if info.layout == "original":
        meta = {k.removeprefix(ORIGINAL_PREFIX): torch.empty(s, device="meta") for k, s in shapes.items()}
        try:
            shapes = {k: tuple(t.shape) for k, t in load(family.convert_original)(meta, config=config).items()}
        except Exception as exc:  # noqa: BLE001 - KeyError, IndexError: whatever a partial file trips
            detail = f"{exc.__class__.__name__}: {str(exc)[:80]}" if str(exc) else exc.__class__.__name__
            raise UsageError(
                f"model {info.path} holds {family.short} weights in the original layout that diffusers' converter "
                f"cannot map ({detail}); is it another model's file, or damaged?"
            ) from None
    with init_empty_weights(include_buffers=False):
        model = getattr(diffusers, family.transformer_class).from_config(config)
    want = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    wrong = [f"{k}: {list(shapes[k])} in the file, {list(want[k])} in the config" for k in want if k in shapes and shapes[k] != want[k]]
    if wrong:  # worded as the load's error (torch's "size mismatch for KEY")
        raise UsageError(f"model {info.path} does not fit the {family.short} {family.denoiser} config (size mismatch for {wrong[0]})")
    mismatched = sorted(set(want) ^ set(shapes))
    if mismatched:
        raise UsageError(
            f"model {info.path} does not fit the {family.short} {family.denoiser} config "
            f"(mismatched keys: {', '.join(mismatched[:3])}); is it another model's file?"
        )


def iter_tensors(info: CheckpointInfo, dtype_for, config: dict | None = None) -> Iterator[tuple[str, object]]:
    """(diffusers key, tensor) pairs, FP8 weights dequantised with their scales.

    `dtype_for(key)` picks each tensor's dtype as it is read, so a diffusers-layout file streams
    with peak memory near the loaded model's size. Original-layout files are dequantised whole
    (in the compute dtype) because diffusers' converter needs every key at once; `config` (the
    transformer config they load into) goes to the converter, which for a UNet reads its layout.
    """
    import torch

    with _open(info.path) as f:
        keys = [k for k in f.keys() if _is_transformer_key(k, info.layout)]
        scales, skip = _scales(keys)

        def read(key: str):
            tensor = f.get_tensor(key)
            if tensor.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
                tensor = tensor.to(torch.float32)
                if key in scales:
                    tensor = tensor * f.get_tensor(scales[key]).to(torch.float32).reshape(())
            return tensor

        if info.layout == "diffusers":
            for key in keys:
                if key not in skip:
                    yield key, read(key).to(dtype_for(key))
            return
        convert = load(models.family(info.family).convert_original)
        fallback = dtype_for("")
        original = {k.removeprefix(ORIGINAL_PREFIX): read(k).to(fallback) for k in keys if k not in skip}
    for key, tensor in convert(original, config=config).items():
        yield key, tensor.to(dtype_for(key))


def _quantise(weight):
    """Per-tensor scaled float8_e4m3fn: `fp8 * scale` reproduces `weight` to FP8 precision."""
    import torch

    w = weight.to(torch.float32)
    scale = (w.abs().max() / FP8_MAX).clamp(min=1e-12)
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale.reshape(1)


def write_checkpoint(
    tensors: Iterator[tuple[str, object]],
    linear_weights: set[str],
    dst: str | Path,
    precision: str,
    scale_name: str,
    metadata: dict[str, str],
    fmt: str,
) -> Path:
    """Write a transformer file in `precision`, atomically (temp file, then rename), its metadata
    naming `fmt` (the family's `checkpoint_format`) and the precision.

    FP8 goes to the weights of `linear_weights` (the Linears outside the precision skip list),
    each with a per-tensor scale; everything else is stored in bf16.
    """
    import torch
    from safetensors.torch import save_file

    if precision not in CONVERT_PRECISIONS:
        raise UsageError(f"precision {precision!r} cannot be written; choose one of {', '.join(CONVERT_PRECISIONS)}")
    if scale_name not in SCALE_NAMES:
        raise UsageError(f"scale name {scale_name!r} is not one of {', '.join(SCALE_NAMES)}")
    plain = {"fp8": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    out = {}
    for key, tensor in tensors:
        if precision == "fp8" and key in linear_weights:
            out[key], out[key[: -len("weight")] + scale_name] = _quantise(tensor)
        else:
            out[key] = tensor.to(plain).contiguous()
    with atomic_path(dst) as tmp:
        save_file(out, str(tmp), metadata={**metadata, "format": fmt, "precision": precision})
    return Path(dst)
