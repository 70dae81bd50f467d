"""FP8 vs bf16 memory of the full-size SD3.5 transformers (random weights, CPU is fine).

Each (architecture, mode) is measured in its own process: the model is built on the meta device,
then every tensor is drawn directly in the dtype the gigacanvas loader gives it (FP8 for the cast
Linears, bf16 for the rest, as on a GPU), and the mode's precision hooks are applied. Printed: resident weight bytes, process peak RSS, and the fp8/bf16
ratios (goal: weights <= 0.55). Weights' values do not change their size, so random ones are honest.

    .venv/bin/python benchmarks/fp8_memory.py [--arch sd3.5-large sd3.5-medium]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", nargs="+", default=["sd3.5-medium", "sd3.5-large"])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    rows = {}
    for arch in args.arch:
        for mode in ("bf16", "fp8"):
            run = subprocess.run([sys.executable, __file__, "--child", arch, mode], capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"{arch} {mode} failed: {run.stderr.strip().splitlines()[-1]}")
            rows[arch, mode] = json.loads(run.stdout.strip().splitlines()[-1])
    gib = 2**30
    print(f"machine: {platform.processor() or platform.machine()}, CPU only; random weights, bf16 compute layout")
    print(f"{'arch':14} {'mode':5} {'params (B)':>10} {'in fp8':>7} {'weights GiB':>12} {'peak RSS GiB':>13} {'weights/bf16':>13} {'peak/bf16':>10}")
    for arch in args.arch:
        base = rows[arch, "bf16"]
        for mode in ("bf16", "fp8"):
            r = rows[arch, mode]
            print(
                f"{arch:14} {mode:5} {r['params'] / 1e9:10.2f} {r['fp8_params'] / r['params']:7.1%} "
                f"{r['weights'] / gib:12.2f} {r['peak_rss'] / gib:13.2f} {r['weights'] / base['weights']:13.3f} "
                f"{r['peak_rss'] / base['peak_rss']:10.3f}"
            )
    print("goal: fp8 weights <= 0.55 x bf16")


if __name__ == "__main__":
    main()
