"""How far the tiled VAE encode of a composed render is from the one-piece encode.

A refinement starts from the composition upscaled to the canvas and encoded in overlapping tiles
(cluster/compose.py: each tile with a halo, blended with the step loop's Gaussian weights in tile
order). The encoder's GroupNorms and mid-block attention then see one window instead of the
canvas. This measures the difference on the SD3.5 VAE architecture with random weights (seeded)
and on the tiny test model's VAE, for a picture like a composition's upscale (a small random
picture, LANCZOS-upscaled), against:

- `whole`: diffusers' `vae.encode` of the whole upscale (the latent distribution's mean);
- `ours`: our tiles with their halo (what renders use), and `ours, no halo`;
- `diffusers`: `enable_tiling()` at the same tile size (its own quarter overlap, linear blend).

Errors: mean absolute difference from `whole` in % of the mean absolute latent, and the largest
absolute difference. Weights are random, so these are bounds on the mechanism, not on SD3.5's
own numbers. Runs in one process on the CPU:

    .venv/bin/python benchmarks/vae_encode.py [--sizes 512 1024] [--tile 256]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def _sd35_vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(  # stabilityai/stable-diffusion-3.5-large vae/config.json
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
        layers_per_block=2, norm_num_groups=32, latent_channels=16, sample_size=1024,
        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
    ).eval()


def _tiny_vae():
    from diffusers import AutoencoderKL

    from gigacanvas.actors.loading import open_model

    return AutoencoderKL.from_pretrained(f"{open_model(None).path}/vae").eval()


def _encoder(vae):
    import torch

    from gigacanvas.actors.circular import circular_padding

    def encode(pixels: np.ndarray, wrap: tuple[bool, bool] = (False, False)) -> np.ndarray:
        with torch.inference_mode(), circular_padding(vae, wrap):
            z = vae.encode(torch.from_numpy(pixels), return_dict=False)[0].mode()
            return ((z - vae.config.shift_factor) * vae.config.scaling_factor).numpy()

    return encode


def _ours(encode, image, size, tile_px, halo_on: bool) -> np.ndarray:
    from gigacanvas.actors.vaeencode import encode_window
    from gigacanvas.cluster.compose import encode_grid
    from gigacanvas.tiling import TileBlender

    grid, halo = encode_grid(size // 8, size // 8, tile_px // 8)
    blender = TileBlender(grid, 16)
    for index, window in enumerate(grid.windows):
        blender.add(index, encode_window(encode, image, (size, size), window, halo if halo_on else 0, 8))
    return blender.result()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--tile", type=int, default=256, help="encode tile in pixels (default 256)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'vae':<6} {'size':>5} {'tile':>5}  {'method':<15} {'mean err %':>10} {'max err':>8} {'s':>6}")
    from gigacanvas.actors.vaeencode import upscale_window
    from gigacanvas.tiling.grid import Window

    rng = np.random.default_rng(0)
    small = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((128, 128))
    )
    for name, vae in (("tiny", _tiny_vae()), ("sd3.5", _sd35_vae())):
        encode = _encoder(vae)
        for size in args.sizes:
            t = time.perf_counter()
            whole = encode(upscale_window(small, size, size, Window(0, 0, size, size))[None])[0]
            rows = [("whole", whole, time.perf_counter() - t)]
            for label, halo in (("ours", True), ("ours, no halo", False)):
                t = time.perf_counter()
                rows.append((label, _ours(encode, small, size, args.tile, halo), time.perf_counter() - t))
            vae.enable_tiling()
            vae.tile_sample_min_size, vae.tile_latent_min_size = args.tile, args.tile // 8
            t = time.perf_counter()
            rows.append(("diffusers", encode(upscale_window(small, size, size, Window(0, 0, size, size))[None])[0], time.perf_counter() - t))
            vae.disable_tiling()
            scale = np.abs(whole).mean()
            for label, latent, seconds in rows:
                diff = np.abs(latent - whole)
                print(f"{name:<6} {size:>5} {args.tile:>5}  {label:<15} {100 * diff.mean() / scale:>10.2f} {diff.max():>8.3f} {seconds:>6.1f}")


if __name__ == "__main__":
    main()
