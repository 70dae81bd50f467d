"""FP8 and GGUF Q8_0 vs bf16 memory of the full-size transformers and the SDXL UNet (random weights, CPU is fine).

Each (architecture, mode) is measured in its own process: the model is built on the meta device,
then every tensor is drawn directly in the dtype the gigacanvas loader gives it (FP8 for the cast
Linears, bf16 for the rest, as on a GPU), and the mode's precision hooks are applied. Printed: resident weight bytes, process peak RSS, and the fp8/bf16
ratios (goal: weights <= 0.55). Weights' values do not change their size, so random ones are honest.

A mode whose weights would not fit in this machine's available memory (Flux.1 [dev] in bf16: 22 GiB)
is counted instead: the same dtype rule applied to the model on the meta device, tensor by tensor
(`precision.weight_bytes`), with no peak RSS. `--count` counts every mode of the listed
architectures. The `how` column says which figures were measured and which counted.

GGUF Q8_0 (`gguf-q8_0`) is always counted: the resident bytes of the transformer as diffusers'
GGUF loader holds a city96-style Q8_0 file (actors/ggufmodel.py `q8_0_bytes`: 34 bytes per 32
quantised weights; the tensors his converter keeps unquantised, `Family.gguf_kept`, 1-D ones and
those of at most 1024 elements, in bf16). tests/actors/test_ggufmodel.py checks the count against
a real GGUF load of the tiny Flux model. `--measure-gguf ARCH...` measures instead: a Q8_0 GGUF
of the architecture is written (diffusers layout, city96's rule; each quantised block random int8
values under one small fp16 scale, the rest random F32: any bytes are a valid block, and values
change no size), then loaded in a fresh process through gigacanvas's GGUF loader in bf16.

    .venv/bin/python benchmarks/fp8_memory.py [--arch sd3.5-large sd3.5-medium flux.1-dev sdxl-base] [--count flux.1-dev]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys


def child(arch: str, mode: str) -> dict:
    import torch

    from gigacanvas.actors.models.architectures import architecture, random_transformer

    # bf16 compute, as on a GPU; random normals are written, so every page is resident
    torch.manual_seed(0)
    model = random_transformer(architecture(arch), mode, "cpu", compute_dtype=torch.bfloat16)
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    fp8 = sum(t.numel() for t in model.parameters() if t.dtype == torch.float8_e4m3fn)
    params = sum(t.numel() for t in model.parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"arch": arch, "mode": mode, "params": params, "fp8_params": fp8, "weights": weights, "peak_rss": peak}


def count(arch: str, mode: str) -> dict:
    """The figures of `child` without building the model: its meta-device layout, counted."""
    import torch

    from gigacanvas.actors.models.architectures import architecture, meta_transformer
    from gigacanvas.actors.precision import dtype_rule, weight_bytes

    model = meta_transformer(architecture(arch))
    dtype_for = dtype_rule(model, mode, "cuda")  # bf16 compute, as on a GPU
    params = sum(t.numel() for t in model.parameters())
    fp8 = sum(t.numel() for name, t in model.named_parameters() if dtype_for(name) == torch.float8_e4m3fn)
    return {"arch": arch, "mode": mode, "params": params, "fp8_params": fp8, "weights": weight_bytes(model, mode, "cuda"), "peak_rss": None}


def build_gguf(arch: str, path: str) -> None:
    """Write a random-weight Q8_0 GGUF of `arch` (see the module docstring) to `path`."""
    import gguf
    import numpy as np

    from gigacanvas.actors.ggufmodel import Q8_0_BLOCK, Q8_0_BYTES, city96_quantises
    from gigacanvas.actors.models import for_transformer
    from gigacanvas.actors.models.architectures import architecture, meta_transformer

    model = meta_transformer(architecture(arch))
    family = for_transformer(model)
    rng = np.random.default_rng(0)
    scale = np.frombuffer(np.float16(2e-4).tobytes(), np.uint8)
    writer = gguf.GGUFWriter(path, arch=family.gguf_arch)
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if city96_quantises(name, shape, family.gguf_kept):
            blocks = rng.integers(0, 256, size=(shape[0], shape[1] // Q8_0_BLOCK, Q8_0_BYTES), dtype=np.uint8)
            blocks[..., :2] = scale
            writer.add_tensor(name, blocks.reshape(shape[0], -1), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def measure_gguf(arch: str, path: str) -> dict:
    """Load the GGUF at `path` as gigacanvas does (bf16 compute) and measure it."""
    import tempfile
    from pathlib import Path

    import diffusers
    import torch

    from gigacanvas.actors.ggufmodel import Q8_0_BLOCK, Q8_0_BYTES, load_gguf
    from gigacanvas.actors.models import for_transformer
    from gigacanvas.actors.models.architectures import architecture, meta_transformer

    config = architecture(arch)
    family = for_transformer(meta_transformer(config))
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / family.denoiser).mkdir()
        (Path(root) / family.denoiser / "config.json").write_text(json.dumps(config))
        cls = getattr(diffusers, family.transformer_class)
        model = load_gguf(cls, Path(root), path, family, "bf16", "cpu", arch)
    tensors = list(model.parameters()) + list(model.buffers())
    weights = sum(t.numel() * t.element_size() for t in tensors)
    quantised = sum(t.numel() * Q8_0_BLOCK // Q8_0_BYTES for t in tensors if t.dtype == torch.uint8)
    params = sum(p.numel() for p in meta_transformer(config).parameters())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"arch": arch, "mode": "gguf-q8_0", "params": params, "fp8_params": int(quantised), "weights": weights, "peak_rss": peak}



def count_gguf(arch: str) -> dict:
    """The resident bytes of `arch` loaded from a Q8_0 GGUF, counted on the meta device."""
    from gigacanvas.actors.ggufmodel import q8_0_bytes
    from gigacanvas.actors.models import for_transformer
    from gigacanvas.actors.models.architectures import architecture, meta_transformer

    model = meta_transformer(architecture(arch))
    weights, quantised = q8_0_bytes(model, for_transformer(model).gguf_kept, compute_bytes=2)  # bf16 compute
    params = sum(t.numel() for t in model.parameters())
    return {"arch": arch, "mode": "gguf-q8_0", "params": params, "fp8_params": quantised, "weights": weights, "peak_rss": None}


def _measured_gguf(arch: str) -> dict:
    """Build a GGUF of `arch` in one process and measure its load in another (so the build's
    memory is not counted), in a temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/{arch}-Q8_0.gguf"
        for flag in ("--build-gguf", "--load-gguf"):
            run = subprocess.run([sys.executable, __file__, flag, arch, path], check=False, capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"{arch} gguf {flag} failed: {run.stderr.strip().splitlines()[-1]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def _available() -> int:
    """This machine's MemAvailable in bytes (what a measured mode may use without swapping)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", nargs="+", default=["sd3.5-medium", "sd3.5-large", "flux.1-dev", "sdxl-base"])
    parser.add_argument("--count", nargs="*", default=[], help="architectures to count on the meta device, not measure")
    parser.add_argument("--measure-gguf", nargs="*", default=[], help="architectures whose GGUF Q8_0 row is measured, not counted")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--build-gguf", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--load-gguf", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.build_gguf:
        build_gguf(*args.build_gguf)
        return
    if args.load_gguf:
        print(json.dumps(measure_gguf(*args.load_gguf)))
        return
    rows = {}
    for arch in args.arch:
        for mode in ("bf16", "fp8"):
            counted = count(arch, mode)
            # measured only with room to spare: the bf16 temporaries of the largest tensors come on top
            if arch in args.count or counted["weights"] * 1.3 > _available():
                rows[arch, mode] = {**counted, "how": "counted"}
                continue
            run = subprocess.run([sys.executable, __file__, "--child", arch, mode], capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"{arch} {mode} failed: {run.stderr.strip().splitlines()[-1]}")
            rows[arch, mode] = {**json.loads(run.stdout.strip().splitlines()[-1]), "how": "measured"}
        rows[arch, "gguf-q8_0"] = {**count_gguf(arch), "how": "counted"}
        if arch in args.measure_gguf:
            rows[arch, "gguf-q8_0"] = {**_measured_gguf(arch), "how": "measured"}
    gib = 2**30
    print(f"machine: {platform.processor() or platform.machine()}, CPU only; random weights, bf16 compute layout")
    print(f"{'arch':14} {'mode':9} {'how':9} {'params (B)':>10} {'8-bit':>7} {'weights GiB':>12} {'peak RSS GiB':>13} {'weights/bf16':>13} {'peak/bf16':>10}")
    for arch in args.arch:
        base = rows[arch, "bf16"]
        for mode in ("bf16", "fp8", "gguf-q8_0"):
            r = rows[arch, mode]
            both = r["peak_rss"] is not None and base["peak_rss"] is not None
            peak = f"{r['peak_rss'] / gib:13.2f}" if r["peak_rss"] is not None else f"{'n/a':>13}"
            print(
                f"{arch:14} {mode:9} {r['how']:9} {r['params'] / 1e9:10.2f} {r['fp8_params'] / r['params']:7.1%} "
                f"{r['weights'] / gib:12.2f} {peak} {r['weights'] / base['weights']:13.3f} "
                f"{(r['peak_rss'] / base['peak_rss'] if both else float('nan')):10.3f}"
            )
    print("goal: fp8 weights <= 0.55 x bf16 (8-bit: the share of parameters stored in FP8, or in Q8_0 blocks)")


if __name__ == "__main__":
    main()
