"""GGUF-quantised transformer files (`--model file.gguf --base-model FOLDER`): check, then load.

The files people download (city96's Flux.1 and SD3.5 GGUFs) hold one transformer in its family's
original key layout (`double_blocks...`, `joint_blocks...`; the diffusers layout loads too),
its Linear weights quantised in blocks (Q8_0, Q4_K, Q5_K, ...) and the small or sensitive tensors
(biases, norms, the input and output projections) in F32, F16 or BF16. Loading is diffusers' own
GGUF support: `from_single_file` with a `GGUFQuantizationConfig` maps the keys with the family's
converter and swaps each quantised Linear for a `GGUFLinear`, whose weight stays quantised in
memory and is dequantised to the compute dtype on every call. Nothing is hand-written here but
the planning checks, which read the header only (`gguf.GGUFReader` maps the file lazily):
- the file parses and holds every tensor it lists (a truncated download ends inside one);
- its tensors are the base folder's family's (its block keys, and the `general.architecture`
  city96's converter writes: flux, sd3), so a GGUF of another model is one line, not a load
  error on every actor;
- every tensor's type is one diffusers dequantises ("a GGUF of an unsupported type" otherwise);
- no tensor was reshaped for the quantiser (`comfy.gguf.orig_shape.*`: city96's SDXL/SD1
  files), which diffusers' loader does not undo;
- the family loads GGUF at all (`Family.gguf_arch`): SDXL does not, see its `__init__`;
- its tensors, mapped to diffusers' keys on the meta device, fill the base folder's transformer
  config (`check_fits`): diffusers' loader would leave a missing weight on the meta device.

Precision: the weights are already quantised, so the `--precision` mode only picks the compute
dtype (bf16, fp16, fp32). FP8 on top would dequantise and quantise again, to a format no smaller
than Q8_0 and less exact: `fp8` and `fp8-compute` are refused with a GGUF, and `auto` picks among
the plain dtypes (`precision.resolve_precision(..., fp8=False)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gigacanvas.errors import UsageError

SUFFIX = ".gguf"
PRECISION = "gguf"  # ModelInfo.weights_precision of a GGUF transformer
RESHAPED = "comfy.gguf.orig_shape."  # metadata city96's converter writes for tensors it reshaped
_FP8_MODES = ("fp8", "fp8-compute")
Q8_0_BLOCK, Q8_0_BYTES = 32, 34  # weights per block, bytes per block (32 int8 and one fp16 scale)
SMALL = 1024  # city96's converter keeps tensors of at most this many elements in F32


def is_gguf(path: str | Path | None) -> bool:
    """Whether `path` names a GGUF file (by its suffix, as users name them)."""
    return path is not None and Path(str(path)).suffix.lower() == SUFFIX


def supported_types() -> dict[int, str]:
    """{GGML type: name} of what diffusers loads: F32 and F16 as plain tensors, the rest dequantised."""
    import gguf
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    types = [gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, *SUPPORTED_GGUF_QUANT_TYPES]
    return {int(t): gguf.GGMLQuantizationType(t).name for t in types}


def _reader(path: Path):
    import gguf

    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - ValueError, IndexError, OSError: one clear line whatever broke
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UsageError(f"model {path} is not a readable GGUF file ({detail}); is it truncated or corrupt?") from None
    if not reader.tensors:
        raise UsageError(f"model {path} is a GGUF file that holds no tensors; it is not a transformer")
    if max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors) > path.stat().st_size:
        raise UsageError(f"model {path} is not a readable GGUF file (it ends before its last tensor); is it truncated?")
    return reader


def _architecture(reader) -> str | None:
    field = reader.fields.get("general.architecture")
    try:
        return None if field is None else bytes(field.parts[field.data[0]]).decode()
    except (IndexError, UnicodeDecodeError):
        return None


def inspect_gguf(path: str | Path, family: Any):
    """`CheckpointInfo` of a GGUF transformer of `family`, from its header; one line if it isn't one."""
    from gigacanvas.actors.checkpoint import ORIGINAL_PREFIX, CheckpointInfo
    from gigacanvas.actors.models import families

    path = Path(path)
    if not family.gguf_arch:
        able = " and ".join(f.label for f in families() if f.gguf_arch)
        raise UsageError(f"model {path} is a GGUF file, which gigacanvas loads for {able} only, not {family.label}; use a .safetensors file or a folder")
    reader = _reader(path)
    arch = _architecture(reader)
    keys = [t.name for t in reader.tensors]
    if any(k.startswith(family.diffusers_blocks + ".") for k in keys):
        layout = "diffusers"
    elif any(k.removeprefix(ORIGINAL_PREFIX).startswith(family.original_blocks + ".") for k in keys):
        layout = "original"
    else:
        layout = None
    if layout is None or arch not in (None, family.gguf_arch):
        said = f" (its architecture is {arch})" if arch else ""
        raise UsageError(f"model {path} is a GGUF of another model{said}, not a {family.short} transformer; pass a {family.label} GGUF")
    known = supported_types()
    bad = next((t for t in reader.tensors if int(t.tensor_type) not in known), None)
    if bad is not None:
        import gguf

        name = gguf.GGMLQuantizationType(int(bad.tensor_type)).name
        raise UsageError(
            f"model {path} is a GGUF of an unsupported type ({name}, tensor {bad.name}); diffusers dequantises "
            f"{', '.join(sorted(set(known.values())))}"
        )
    if any(name.startswith(RESHAPED) for name in reader.fields):
        raise UsageError(f"model {path} is a GGUF with reshaped tensors ({RESHAPED}*), which diffusers' GGUF loader does not undo")
    types = sorted({known[int(t.tensor_type)] for t in reader.tensors})
    return CheckpointInfo(str(path), family.name, layout, PRECISION, None, {"gguf_types": ",".join(types)})


def check_fits(info: Any, family: Any, config: dict) -> None:
    """Refuse a GGUF whose tensors do not fill `config`'s transformer, before any actor loads it.

    diffusers' GGUF loader leaves a weight the file lacks on the meta device and fails later, on
    every actor, with no word of the file; so the header's shapes are mapped to diffusers' keys
    here, on the meta device (the family's own converter for the original layout), and compared
    with the transformer built from the base folder's config.
    """
    import diffusers
    import torch
    from accelerate import init_empty_weights

    from gigacanvas.actors.models import load

    tensors = {t.name: torch.empty(tuple(int(n) for n in reversed(t.shape)), device="meta") for t in _reader(Path(info.path)).tensors}
    try:
        if info.layout == "original":
            tensors = load(family.convert_original)(tensors)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
        raise UsageError(f"model {info.path} does not fit the {family.short} transformer config of the base model ({detail})") from None
    with init_empty_weights():
        expected = getattr(diffusers, family.transformer_class).from_config(config).state_dict()
    missing = [k for k in expected if k not in tensors]
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or wrong:
        detail = f"missing {', '.join(missing[:3])}" if missing else f"shapes {', '.join(wrong[:2])}"
        raise UsageError(f"model {info.path} does not fit the {family.short} transformer config of the base model ({detail}); is it another size or release?")


def check_gguf_precision(weights_precision: str, requested: str, source: str) -> None:
    """Refuse an FP8 `--precision` with a GGUF transformer (see the module docstring)."""
    if weights_precision == PRECISION and requested in _FP8_MODES:
        raise UsageError(
            f"precision {requested} does not apply to the GGUF model {source}: its weights stay quantised and are "
            "dequantised to the compute dtype; pass --precision auto, bf16, fp16 or fp32"
        )


def load_gguf(model_class: Any, root: Path, path: str | Path, family: Any, precision: str, device: str, what: str):
    """`family`'s transformer from the GGUF at `path`, configured by `root`'s denoiser folder,
    computing in `precision`'s dtype on `device` (diffusers' `from_single_file`)."""
    from diffusers import GGUFQuantizationConfig

    from gigacanvas.actors.precision import dtypes

    check_gguf_precision(PRECISION, precision, str(path))
    compute = dtypes(precision, device)[1]
    try:
        return model_class.from_single_file(
            str(path),
            quantization_config=GGUFQuantizationConfig(compute_dtype=compute),
            config=str(root),
            subfolder=family.denoiser,
            torch_dtype=compute,
            local_files_only=True,
        )
    except (ValueError, RuntimeError, KeyError, IndexError) as exc:  # shapes or keys of another size of model
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
        raise UsageError(f"model {path} does not fit the {what} config ({detail})") from None


def city96_quantises(name: str, shape: tuple[int, ...], kept: tuple[str, ...]) -> bool:
    """Whether city96's converter quantises the tensor `name` (a diffusers name) of `shape` to Q8_0.

    His rule: 1-D tensors and those of at most 1024 elements stay F32, the family's input and
    output layers (`Family.gguf_kept`) stay unquantised, 2-D weights whose rows fill whole blocks
    are quantised; larger kernels only where his converter reshapes them into 256-wide rows
    (SDXL's convolutions), which needs their size to divide by 256.
    """
    import math
    import re

    numel = math.prod(shape)
    if len(shape) < 2 or numel <= SMALL or any(re.search(p, name.rpartition(".")[0]) for p in kept):
        return False
    return shape[-1] % Q8_0_BLOCK == 0 if len(shape) == 2 else numel % 256 == 0


def q8_0_bytes(model: Any, kept: tuple[str, ...], compute_bytes: int = 2) -> tuple[int, int]:
    """(resident bytes, quantised parameters) of `model` (the meta device is enough) loaded from
    a city96-style Q8_0 GGUF: 34 bytes per 32 quantised weights, and every other tensor in the
    compute dtype (`compute_bytes` each), as diffusers' loader casts the file's F32/F16 ones."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    total = quantised = 0
    for name, tensor in tensors:
        if city96_quantises(name, tuple(tensor.shape), kept):
            total += tensor.numel() // Q8_0_BLOCK * Q8_0_BYTES
            quantised += tensor.numel()
        else:
            total += tensor.numel() * compute_bytes
    return total, quantised
