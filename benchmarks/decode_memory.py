"""Does the decode's memory stay flat as the canvas grows? Peak memory of the driver and of every
worker actor for renders of growing canvases with the tiny model and one step.

Each canvas renders in its own driver process (its peak resident memory, `ru_maxrss`, is the
driver's figure) on a fresh local Ray cluster. Each worker reports its own peak anonymous memory
per decode stage (actors/memwatch.py; mapped object-store pages are not its own): `head` (the
mid-block on the whole latent, the one stage that grows with the canvas; one worker runs it) and
`tail` (the tiles), and the memory each worker held when its tail stage began (`tail start`:
what the denoising and the head left in its allocators; the peak less it is the tail's own
working set). Target (issue 11): the tail's peak at 16384 px within 1.2x of 2048 px; the
driver's absolute MiB, holding nothing canvas-sized.

    .venv/bin/python benchmarks/decode_memory.py [--sizes 2048 8192 16384] [--decode fast] [--vae-tile 1024] [--windowed-head]

`--windowed-head`: the head's mid-block attends in windows at 8192 px too (as it does past it), by a
Ray worker setup hook of this script's; its global attention over a million latent pixels takes
hours on one CPU thread (a fractional-CPU actor gets one), seconds on a GPU. Attention is computed
in chunks either way, so the head's memory is about the same; the tail and the driver do not
depend on it.

`--decode fast` by default: the exact mode's tiles, windows and stages are the same (its memory
too), it only runs the tiles once per GroupNorm, which on 2 CPU cores takes hours at 16384 px.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile


def _watch_driver(peaks: dict) -> None:
    """The driver's own peak per phase: its render calls (the step loop, the decode, the outputs)
    wrapped in memwatch's sampler, so a canvas-sized array held in one phase shows in that phase's
    row (`ru_maxrss` alone gives one number for the whole run, object-store pages included)."""
    from gigacanvas.actors import memwatch
    from gigacanvas.cluster import render as render_module

    def wrapped(name: str, function):
        def call(*args, **kwargs):
            with memwatch.watched(peaks, name):
                return function(*args, **kwargs)

        return call

    for name, attribute in (("denoise", "denoise"), ("decode", "decode_into_store"), ("outputs", "write_output")):
        setattr(render_module, attribute, wrapped(name, getattr(render_module, attribute)))


def _windowed_head() -> None:
    """Ray's worker setup hook for `--windowed-head`: every worker's head attends in windows."""
    from gigacanvas.actors import vaedecode

    vaedecode.EXACT_ATTENTION_PIXELS = 0


def _with_windowed_head() -> None:
    """`ray.init` as the render calls it, plus a setup hook in every worker (pickled by value from
    this script: gigacanvas itself has no such knob, its pixels depend on the spec alone)."""
    import ray

    init = ray.init

    def patched(*args, **kwargs):
        return init(*args, runtime_env={"worker_process_setup_hook": _windowed_head}, **kwargs)

    ray.init = patched


def _one(size: int, decode: str, vae_tile: int, folder: str, windowed: bool = False) -> dict:
    from gigacanvas.actors import memwatch
    from gigacanvas.cluster.render import render
    from gigacanvas.cluster.spec import RenderSpec

    driver: dict = {}
    _watch_driver(driver)
    if windowed:
        _with_windowed_head()

    out = os.path.join(folder, f"m{size}.png" if size <= 16384 else f"m{size}.tif")
    spec = RenderSpec(
        prompt="memory", width=size, height=size, steps=1, guidance=1.0, seed=1, actors=2, precision="fp32",
        vae_tile_size=vae_tile, vae_decode=decode, store=os.path.join(folder, f"m{size}.zarr"), out=out,
    )
    with memwatch.watched(driver, "render"):
        result = render(spec, progress=False, notify=lambda line: None)
    report = result.decode
    return {
        "driver_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "driver": driver,
        "peaks": list(report.peaks) if report else [],
        "tiles": report.tiles if report else 0,
        "decode_s": result.decode_seconds,
        "total_s": result.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192, 16384])
    parser.add_argument("--decode", default="fast", choices=("exact", "fast"))
    parser.add_argument("--vae-tile", type=int, default=1024, help="decode tile side in pixels")
    parser.add_argument(
        "--windowed-head", action="store_true",
        help="the head attends in windows at every size (exact global attention at 8192 px takes hours on one CPU thread)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.decode, args.vae_tile, args.folder, args.windowed_head)))
        return
    head = "; the head's attention windowed at every size" if args.windowed_head else ""
    print(f"tiny model, 1 step, 2 actors, fp32, decode {args.decode}, {args.vae_tile} px tiles; {os.cpu_count()} cores{head}")
    print(
        f"{'size':>6} {'tiles':>6} {'driver MiB':>11} {'head MiB':>9} {'tail MiB (per worker)':>24} "
        f"{'tail start MiB':>16} {'decode s':>9} {'total s':>8}"
    )
    rows, drivers = {}, {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--decode", args.decode, "--vae-tile", str(args.vae_tile), "--folder", folder]
                + (["--windowed-head"] if args.windowed_head else []),
                capture_output=True, text=True, check=False,
            )
        if done.returncode:
            print(f"{size:>6} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        got = json.loads(done.stdout.strip().splitlines()[-1])
        heads = [p["head"] for p in got["peaks"] if "head" in p]
        tails = [p.get("tail", 0.0) for p in got["peaks"]]
        starts = [p.get("tail start", 0.0) for p in got["peaks"]]
        rows[size] = max(tails) if tails else None
        drivers[size] = got["driver"]
        print(
            f"{size:>6} {got['tiles']:>6} {got['driver_mib']:>11.0f} {max(heads) if heads else 0:>9.0f} "
            f"{', '.join(f'{t:.0f}' for t in tails):>24} {', '.join(f'{t:.0f}' for t in starts):>16} "
            f"{got['decode_s']:>9.1f} {got['total_s']:>8.1f}"
        )
    phases = ("render start", "denoise", "decode", "outputs", "render")
    print("driver's own memory (anonymous RSS, MiB) at the render's start and its peak per phase:")
    print(f"{'size':>6} " + " ".join(f"{p:>13}" for p in phases))
    for size, peaks in drivers.items():
        print(f"{size:>6} " + " ".join(f"{peaks.get(p, 0.0):>13.0f}" for p in phases))
    small, large = min(rows, default=None), max(rows, default=None)
    if small and large and small != large and rows[small] and rows[large]:
        print(f"tail peak {large} / {small}: {rows[large] / rows[small]:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
