"""Precision modes: what each means, what a device supports, and how a model is put in one.

Modes, fastest first where the hardware has them:
- `fp8-compute`: FP8 matrix multiplies (torchao's float8 dynamic-activation config), CUDA
  compute capability 8.9+ only;
- `fp8`: weights stored as float8_e4m3fn, computed in bf16 (fp32 on the CPU), with diffusers'
  layerwise casting: half of bf16's weight memory, bf16's maths;
- `bf16`, `fp16`, `fp32`: plain dtypes.
`auto` picks the fastest mode the device supports (fp8-compute, bf16 or fp16 on GPUs; bf16 on
CPUs with native bf16, else fp32). A mode the device lacks falls back along
`FALLBACK` with a one-line reason, or fails under `--strict-precision`.

Which layers stay in higher precision, and why (`FP8_SKIP_PATTERNS`): the patch embedding and
positional table (`pos_embed`), the timestep/pooled-text embedding MLPs (`time_text_embed`), the
text input projection (`context_embedder`), the last modulation and projection (`norm_out`,
`proj_out`): together about 1.6% of SD3.5 Large's weights, and the layers whose errors are not
averaged away by later blocks. The RMS/LayerNorms are not Linears, so they are never cast. Unlike
diffusers' default patterns, which skip every module whose name contains "norm", the adaLN
modulation Linears (`norm1.linear`, `norm1_context.linear`, about a third of the weights) are
cast: they are plain matrix multiplies. A family adds its own names for the same kinds of layer
(`Family.fp8_skip`, found by the transformer's class: `skip_patterns`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gigacanvas.errors import UsageError

MODES = ("auto", "fp8", "fp8-compute", "bf16", "fp16", "fp32")
FALLBACK = {"fp8-compute": "fp8", "fp8": "bf16", "bf16": "fp32", "fp16": "fp32"}
FP8_SKIP_PATTERNS = ("pos_embed", "time_text_embed", "context_embedder", "norm_out", "^proj_out$")


@dataclass(frozen=True)
class Capabilities:
    """What one actor's device can do, reported by the actor before any weights load."""

    device: str  # "cpu" or "cuda"
    device_name: str
    cuda_capability: tuple[int, int] | None = None
    has_float8: bool = True
    has_torchao: bool = False
    cpu_bf16: bool = False  # the CPU multiplies bf16 natively (AVX512-BF16, AMX, Arm BF16)


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = set(fh.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def probe() -> Capabilities:
    """This process's device capabilities."""
    import importlib.util

    import torch

    has_float8 = hasattr(torch, "float8_e4m3fn")
    has_torchao = importlib.util.find_spec("torchao") is not None
    if torch.cuda.is_available():
        return Capabilities(
            "cuda", torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)), has_float8, has_torchao
        )
    import platform

    return Capabilities("cpu", platform.processor() or platform.machine(), None, has_float8, has_torchao, _cpu_has_bf16())


def unsupported_reason(mode: str, caps: Capabilities) -> str | None:
    """Why `mode` cannot run on `caps`, or None when it can."""
    if mode == "fp8-compute":
        if caps.device != "cuda":
            return f"no CUDA device ({caps.device} only)"
        if caps.cuda_capability < (8, 9):
            cc = ".".join(map(str, caps.cuda_capability))
            return f"{caps.device_name} (compute capability {cc}) has no FP8 matrix units; 8.9+ needed"
        if not caps.has_torchao:
            return "torchao is not installed (pip install torchao)"
    if mode == "fp8" and not caps.has_float8:
        return "this torch has no float8_e4m3fn dtype"
    if mode == "bf16" and caps.device == "cuda" and caps.cuda_capability < (8, 0):
        return f"{caps.device_name} has no bf16 support"
    return None


def _auto(caps: Capabilities, fp8: bool = True) -> str:
    if caps.device == "cpu":
        # bf16 doubles matmul speed on CPUs with native bf16 (measured: benchmarks/fp8_speed.py);
        # elsewhere it is emulated and slower than fp32. FP8 storage is slower still on a CPU.
        return "bf16" if caps.cpu_bf16 else "fp32"
    for mode in ("fp8-compute", "bf16", "fp16")[0 if fp8 else 1 :]:
        if unsupported_reason(mode, caps) is None:
            return mode
    return "fp32"


def resolve_precision(
    requested: str, caps: list[Capabilities], strict: bool = False, fp8: bool = True
) -> tuple[str, str | None]:
    """The one mode every actor runs, and a one-line note when it differs from the request.

    One mode for all actors, because precision changes the bits: a mixed cluster runs the mode the
    least capable actor supports. `fp8=False` (a GGUF transformer, already quantised: see
    actors/ggufmodel.py) keeps `auto` on the plain dtypes; planning refuses an explicit FP8 mode.
    """
    if requested == "auto":
        ranked = list(FALLBACK) + ["fp32"]
        return max((_auto(c, fp8) for c in caps), key=ranked.index), None
    if not fp8 and requested in ("fp8", "fp8-compute"):
        raise UsageError(f"precision {requested} does not apply to this model's already quantised weights")
    mode, reasons = requested, []
    while True:
        reason = next((r for c in caps if (r := unsupported_reason(mode, c)) is not None), None)
        if reason is None:
            break
        reasons.append(f"{mode}: {reason}")
        mode = FALLBACK[mode]
    if mode == requested:
        return mode, None
    if strict:
        raise UsageError(f"precision {requested} is not available ({'; '.join(reasons)}) and --strict-precision is set")
    return mode, f"gigacanvas: precision {requested} is not available ({'; '.join(reasons)}); using {mode}"


def dtypes(mode: str, device: str):
    """(storage dtype, compute dtype) of the transformer's cast layers in `mode` on `device`."""
    import torch

    high = torch.float32 if device == "cpu" else torch.bfloat16
    return {
        "fp8": (torch.float8_e4m3fn, high),
        "fp8-compute": (high, high),  # torchao swaps the Linears after loading
        "bf16": (torch.bfloat16, torch.bfloat16),
        "fp16": (torch.float16, torch.float16),
        "fp32": (torch.float32, torch.float32),
    }[mode]


def skip_patterns(model) -> tuple[str, ...]:
    """The module-name patterns kept out of FP8 in `model`: ours and its family's (`fp8_skip`)."""
    from gigacanvas.actors.models import for_transformer

    family = for_transformer(model)
    return FP8_SKIP_PATTERNS + (family.fp8_skip if family else ())


def is_fp8_layer(name: str, patterns: tuple[str, ...] = FP8_SKIP_PATTERNS) -> bool:
    """Whether module `name` of the transformer is stored in FP8 (a Linear outside the skips)."""
    import re

    return not any(re.search(p, name) for p in patterns)


def fp8_modules(model) -> set[str]:
    """Names of the modules whose weights FP8 storage holds: the layer kinds diffusers'
    layerwise casting handles (Linear, Conv, Embedding), minus the skip patterns."""
    import torch

    try:
        from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS as castable
    except ImportError:  # older diffusers: the same kinds, spelled out
        castable = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)
    patterns = skip_patterns(model)
    return {name for name, m in model.named_modules() if isinstance(m, castable) and is_fp8_layer(name, patterns)}


def dtype_rule(model, mode: str, device: str, compute=None):
    """`dtype_for(tensor name)`: the storage dtype for tensors of FP8-stored modules, else the
    compute dtype (`compute` overrides the device's). Loader, benchmarks and byte counts share it."""
    storage, default_compute = dtypes(mode, device)
    compute = compute or default_compute
    stored = fp8_modules(model) if storage != compute else set()

    def dtype_for(name: str):
        return storage if name.rpartition(".")[0] in stored else compute

    return dtype_for


def weight_bytes(model, mode: str, device: str = "cuda") -> int:
    """Bytes the model's parameters and buffers take in `mode` (works on the meta device)."""
    import torch

    dtype_for = dtype_rule(model, mode, device)
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return sum(t.numel() * torch.empty((), dtype=dtype_for(name)).element_size() for name, t in tensors)


def apply_precision(model, mode: str, device: str, compute=None) -> None:
    """Put a loaded transformer in `mode` (its weights already in the storage dtypes).

    `compute` overrides the device's compute dtype (a benchmark laying out a GPU model on a CPU).
    """
    storage, default_compute = dtypes(mode, device)
    compute = compute or default_compute
    if mode == "fp8":
        from diffusers.hooks import apply_layerwise_casting

        # Our own patterns, through the hook function: the model method would add diffusers'
        # "norm" pattern back and leave the adaLN Linears in bf16.
        apply_layerwise_casting(model, storage, compute, skip_modules_pattern=skip_patterns(model))
    elif mode == "fp8-compute":
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

        import torch

        patterns = skip_patterns(model)

        def wanted(module, name: str) -> bool:
            return isinstance(module, torch.nn.Linear) and is_fp8_layer(name, patterns)

        quantize_(model, Float8DynamicActivationFloat8WeightConfig(), filter_fn=wanted)
