"""Per-tile transformer step latency with CFG: bf16 vs fp8 vs fp8-compute (and peak GPU memory).

On a CUDA GPU: the SD3.5 Large architecture (random weights) on one 1024x1024 tile (128x128
latent), batch 2 (negative + positive prompt), 333 text tokens. Without a GPU, the CPU-sized
variant: the same layer width with 2 of the 38 blocks, a 256x256 tile, fp32/bf16/fp8. A mode the
device lacks is reported with its fallback reason, not timed twice. Each figure is the median of
`--repeats` timed steps after warm-up, all modes measured in the same run.

    .venv/bin/python benchmarks/fp8_speed.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time


def main() -> None:
    import torch

    from gigacanvas.actors.models.architectures import architecture, random_transformer
    from gigacanvas.actors.precision import probe, resolve_precision

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--layers", type=int, default=None, help="blocks to keep (default: all on GPU, 2 on CPU)")
    args = parser.parse_args()
    caps = probe()
    gpu = caps.device == "cuda"
    config = architecture("sd3.5-large")
    config["num_layers"] = args.layers or (38 if gpu else 2)
    tile_lat = 128 if gpu else 32
    modes = ("bf16", "fp8", "fp8-compute") if gpu else ("fp32", "bf16", "fp8", "fp8-compute")
    device = caps.device
    print(f"device: {caps.device_name} ({device}); SD3.5 Large width, {config['num_layers']} blocks; "
          f"tile {tile_lat * 8}x{tile_lat * 8} px, CFG batch 2; {args.repeats} timed steps per mode")
    rows = []
    for mode in modes:
        resolved, note = resolve_precision(mode, [caps])
        if resolved != mode:
            rows.append((mode, None, None, None, note.split("(", 1)[1].rsplit(")", 1)[0]))
            continue
        torch.manual_seed(0)
        if gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            model = random_transformer(config, mode, device)
        except Exception as exc:  # noqa: BLE001 - e.g. a torchao that does not match this torch: report, go on
            rows.append((mode, None, None, None, f"failed to build: {exc.__class__.__name__}: {str(exc)[:160]}"))
            continue
        compute = torch.float32 if mode == "fp32" or (not gpu and mode == "fp8") else torch.bfloat16
        if mode == "fp16":
            compute = torch.float16
        x = torch.randn(2, 16, tile_lat, tile_lat, device=device, dtype=compute)
        text = torch.randn(2, 333, config["joint_attention_dim"], device=device, dtype=compute)
        pooled = torch.randn(2, config["pooled_projection_dim"], device=device, dtype=compute)
        t = torch.full((2,), 500.0, device=device)

        def step(model=model, x=x, t=t, text=text, pooled=pooled):  # this mode's, bound now
            with torch.inference_mode():
                model(hidden_states=x, timestep=t, encoder_hidden_states=text, pooled_projections=pooled, return_dict=False)
            if gpu:
                torch.cuda.synchronize()

        try:
            for _ in range(3):
                step()
        except Exception as exc:  # noqa: BLE001 - a mode that builds but cannot run here: report, go on
            rows.append((mode, None, None, None, f"failed to run: {exc.__class__.__name__}: {str(exc)[:160]}"))
            del model, step
            gc.collect()
            continue
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else None
        rows.append((mode, statistics.median(times), min(times), max(times), peak))
        del model, step, x, text, pooled
        gc.collect()
    base = next(r[1] for r in rows if r[1] is not None and r[0] == "bf16")
    print(f"{'mode':12} {'median s':>9} {'min':>8} {'max':>8} {'vs bf16':>8} {'peak GPU GiB':>13}")
    for mode, med, lo, hi, extra in rows:
        if med is None:
            print(f"{mode:12} not run: {extra}")
        else:
            peak = f"{extra:13.2f}" if extra is not None else f"{'n/a (CPU)':>13}"
            print(f"{mode:12} {med:9.3f} {lo:8.3f} {hi:8.3f} {base / med:7.2f}x {peak}")


if __name__ == "__main__":
    main()
