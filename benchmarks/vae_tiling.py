"""How far tiled VAE decodes are from the one-piece decode, and what they cost.

For canvases small enough to decode whole, on the SD3.5 VAE architecture with random weights
(weights change neither speed nor memory; seeded, so every method decodes the same latent):

- `whole`: diffusers' `vae.decode` in one piece, the reference;
- `exact`: ours (actors/vaedecode.py), tiles with the whole canvas's GroupNorm statistics, the
  passes of tiling/decodepasses.py (checkpoints at the up-blocks' ends);
- `fast`: ours, the first up-block's statistics exact, the rest estimated from crops spread
  over the canvas (at most FAST_STATS_SIDE squared latent pixels of window);
- `diffusers`: `enable_tiling()` at the same tile size (a quarter overlap, its default);
- `windowed`: the whole decode with the mid-block attending in ATTENTION_WINDOW-sized windows
  scaled down to this canvas (the same number of windows as a 16384 px canvas has), to show
  what the windowed attention used past 8192 px costs.

Each method runs in its own process (peak memory is the process's, over what the model costs),
one after the other on the same machine. Errors are on the 0-255 scale of the PNG:
mean and max absolute difference from `whole`, and PSNR. Targets (issue 11): exact PSNR >= 60 dB
(mean <= 0.05) at 1024 and 2048 px; fast's mean error <= 0.15x diffusers' at 2048 px.

    .venv/bin/python benchmarks/vae_tiling.py [--sizes 1024 2048] [--tile 512] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

METHODS = ("whole", "exact", "fast", "diffusers", "windowed")


def _vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(  # stabilityai/stable-diffusion-3.5-large vae/config.json
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
        layers_per_block=2, norm_num_groups=32, latent_channels=16, sample_size=1024,
        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
    ).eval()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _latent(size: int, kind: str):
    """The latent every method decodes: `noise`, seeded standard normal (the same statistics
    everywhere, kind to any sampled estimate), or `varying`, the same noise under a contrast that
    grows from left to right and a per-channel offset that changes from top to bottom, so that
    statistics taken from part of the canvas are not those of all of it, as in a real picture."""
    import numpy as np
    import torch

    lat = size // 8
    latent = torch.randn((16, lat, lat), generator=torch.Generator().manual_seed(size)).numpy()
    if kind == "varying":
        ys, xs = np.mgrid[0:lat, 0:lat] / lat
        latent = latent * (0.3 + 1.4 * xs)[None] + (2 * ys - 1)[None] * np.linspace(-1, 1, 16)[:, None, None]
    return latent.astype(np.float32)


def _one(method: str, size: int, tile: int, out: str, fast_side: int | None = None, kind: str = "noise") -> dict:
    """Decode one canvas with one method in this process; the pixels go to `out` (.npy)."""
    import numpy as np
    import torch

    from gigacanvas.actors import vaedecode
    from gigacanvas.actors.vaedecode import SeamlessVae, decode_in_tiles, to_uint8
    from gigacanvas.cluster.decode import FAST_STATS_SIDE

    vae = _vae()
    lat = size // 8
    latent = _latent(size, kind)
    base = _rss_mib()
    start = time.perf_counter()
    with torch.inference_mode():
        if method in ("whole", "diffusers"):
            if method == "diffusers":
                vae.enable_tiling()
                vae.tile_sample_min_size, vae.tile_latent_min_size = tile, tile // 8
            z = torch.from_numpy(latent)[None] / vae.config.scaling_factor + vae.config.shift_factor
            pixels = vae.decode(z, return_dict=False)[0][0].numpy()
        else:
            stages = SeamlessVae(vae, "cpu", torch.float32)
            if method == "windowed":
                vaedecode.EXACT_ATTENTION_PIXELS = 0
                vaedecode.ATTENTION_WINDOW = max(1, lat * vaedecode.ATTENTION_WINDOW // 2048)
            if method == "exact":
                pixels = decode_in_tiles(stages, latent, tile // 8)
            elif method == "fast":
                pixels = decode_in_tiles(stages, latent, tile // 8, side=fast_side or FAST_STATS_SIDE)
            else:
                pixels = decode_in_tiles(stages, latent, 0)
    seconds = time.perf_counter() - start
    np.save(out, to_uint8(pixels))
    return {"seconds": seconds, "peak_mib": _rss_mib() - base}


def _errors(ours, whole) -> tuple[float, float, float]:
    import numpy as np

    d = np.abs(ours.astype(np.float64) - whole.astype(np.float64))
    mse = (d**2).mean()
    return d.mean(), d.max(), (float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=512, help="tile side in pixels (ours and diffusers')")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per method (the median is shown)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--fast-side", type=int, help="the fast mode's crops hold at most this side squared latent pixels of window "
        "(default: FAST_STATS_SIDE, 128; the fast mode then equals exact below 1024 px)",
    )
    parser.add_argument("--latent", default="noise", choices=("noise", "varying"), help="what is decoded (see _latent)")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one[0], int(args.one[1]), args.tile, args.one[2], args.fast_side, args.latent)))
        return
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads; fp32, CPU")
    side = args.fast_side or "FAST_STATS_SIDE"
    print(
        f"SD3.5 VAE architecture, random weights; {args.latent} latent; tiles {args.tile} px; fast crops at most "
        f"{side} squared latent px; one process per run"
    )
    print(f"{'size':>5} {'method':>9} {'mean err':>9} {'max err':>8} {'PSNR dB':>8} {'s (median)':>11} {'min-max s':>13} {'peak MiB':>9}")
    methods = ["whole", *[m for m in args.methods if m != "whole"]]
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            whole = None
            means = {}
            for method in methods:
                runs = []
                for _ in range(args.repeat):
                    out = os.path.join(tmp, f"{method}-{size}.npy")
                    done = subprocess.run(
                        [sys.executable, __file__, "--tile", str(args.tile), "--latent", args.latent, "--one", method, str(size), out]
                        + (["--fast-side", str(args.fast_side)] if args.fast_side else []),
                        capture_output=True, text=True, check=True,
                    )
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                pixels = np.load(out)
                if method == "whole":
                    whole = pixels
                mean, most, psnr = _errors(pixels, whole)
                means[method] = mean
                secs = [r["seconds"] for r in runs]
                print(
                    f"{size:>5} {method:>9} {mean:>9.4f} {most:>8.0f} {psnr:>8.1f} {statistics.median(secs):>11.1f} "
                    f"{min(secs):>6.1f}-{max(secs):<6.1f} {max(r['peak_mib'] for r in runs):>9.0f}"
                )
            if "fast" in means and "diffusers" in means and means["diffusers"]:
                print(f"{size:>5} fast/diffusers mean error ratio: {means['fast'] / means['diffusers']:.3f} (target <= 0.15 at 2048)")


if __name__ == "__main__":
    main()
