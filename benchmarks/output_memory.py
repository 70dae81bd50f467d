"""Does writing the outputs hold more as the picture gets wider? The driver's own peak anonymous
memory (actors/memwatch.py) while it builds the store's multiscale levels and writes each output
(PNG, TIFF, OME-Zarr export), for pictures of the same height and growing width.

No render and no Ray: each width gets a store whose `image` is filled with random pixels band by
band (the decode's part, measured by decode_memory.py), then the outputs are written from it as a
render's last phase writes them (storage/outputs.py). Each width runs in its own process, so one
width's allocator leftovers do not count against the next. Only the width matters to the output
writers' working set (a band is a chunk row of the picture, 1024 rows); the height only adds
bands, read one at a time, so 2048 rows stand for any height.

    .venv/bin/python benchmarks/output_memory.py [--widths 2048 16384] [--rows 2048]

Figures are MiB: `start` what the process held before the phase, `peak` its largest sample during
it (the phase's own working set is the difference).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

OUTPUTS = ("levels", "png", "tif", "ome.zarr")


def _one(width: int, rows: int) -> dict:
    import numpy as np

    from gigacanvas.actors.memwatch import anon_rss_mib, watched
    from gigacanvas.storage.multiscale import build_levels
    from gigacanvas.storage.outputs import write_output
    from gigacanvas.storage.store import IMAGE_CHUNK, LatentStore

    picture = {"prompt": "output memory", "width": width, "height": rows}
    folder = tempfile.mkdtemp(prefix="gigacanvas-outmem-")
    store = LatentStore(f"file://{folder}/s.zarr")
    store.create(picture, "f" * 16, 16, rows // 8, width // 8, 8)
    rng = np.random.default_rng(0)
    for y0 in range(0, rows, IMAGE_CHUNK):
        n = min(IMAGE_CHUNK, rows - y0)
        store.write_image_window(y0, 0, rng.integers(0, 256, (n, width, 3), dtype=np.uint8))
    store.mark_decoded()
    peaks: dict = {"before": anon_rss_mib()}
    seconds = {}
    for name in OUTPUTS:
        started = time.perf_counter()
        with watched(peaks, name):
            if name == "levels":
                build_levels(store, picture)
            else:
                write_output(f"{folder}/out.{name}", store, picture, "")
        seconds[name] = time.perf_counter() - started
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return {"peaks": peaks, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[2048, 16384])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one width
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.rows)))
        return
    band = {w: 1024 * w * 3 / 2**20 for w in args.widths}
    print(f"{args.rows} rows; the driver's anonymous MiB, start -> peak (seconds); a band is 1024 rows")
    print(f"{'width':>6} {'band MiB':>9} " + " ".join(f"{name:>22}" for name in OUTPUTS))
    for width in args.widths:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(width), "--rows", str(args.rows)],
            check=True, capture_output=True, text=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        peaks, seconds = got["peaks"], got["seconds"]
        cells = [f"{peaks[f'{n} start']:.0f} -> {peaks[n]:.0f} ({seconds[n]:.1f} s)" for n in OUTPUTS]
        print(f"{width:>6} {band[width]:>9.0f} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
