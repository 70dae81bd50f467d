"""What `gigacanvas.keep_workers()` saves a process that renders several pictures (CPU, tiny model).

One local Ray cluster; the same small render (the built-in tiny model, 512 x 320 px, 2 steps, two
actors, a file store: two band reducers) repeated, alternating a render whose actors end with it
(the default) and one that takes the actors the previous kept render parked, so both kinds see
the same machine at the same moments. Printed: median, min and max seconds of each kind, the
ratio of the medians, and whether every picture is the same bits (it must be).

With a real model the saving is the model load (seconds to minutes per actor), not only imports.

    .venv/bin/python benchmarks/kept_workers.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="renders of each kind (default 5)")
    args = parser.parse_args()

    import ray

    import gigacanvas
    from gigacanvas import RenderSpec, render

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="gigacanvas-kept-"))
    spec = dict(
        prompt="a harbour at night", width=512, height=320, steps=2, seed=5, tile_size=256, tile_overlap=64,
        actors=2, compose="none", precision="fp32",
    )
    quiet = lambda line: None  # noqa: E731

    def one(name: str) -> tuple[float, str]:
        started = time.perf_counter()
        result = render(RenderSpec(out=str(folder / f"{name}.png"), **spec), progress=False, notify=quiet)
        seconds = time.perf_counter() - started
        return seconds, hashlib.sha256(Path(result.out).read_bytes()).hexdigest()[:16]

    seconds: dict[str, list[float]] = {"fresh": [], "kept": []}
    digests = set()
    gigacanvas.keep_workers()
    one("warm-up")  # parks the first kept actors; imports and the tiny model's build happen here too
    for i in range(args.repeat):
        gigacanvas.keep_workers(False)  # kills the parked ones: this render starts and ends its own
        took, digest = one(f"fresh-{i}")
        seconds["fresh"].append(took)
        digests.add(digest)
        gigacanvas.keep_workers()
        one(f"park-{i}")  # fresh actors again, parked at the end
        took, digest = one(f"kept-{i}")  # takes them
        seconds["kept"].append(took)
        digests.add(digest)
    gigacanvas.release_workers()
    ray.shutdown()

    print(f"kept_workers: {args.repeat} renders of each kind, 512x320 px, 2 steps, 2 actors, tiny model, fp32")
    for kind, values in seconds.items():
        print(
            f"  {kind:5s} median {statistics.median(values):6.2f} s  min {min(values):6.2f} s  max {max(values):6.2f} s"
        )
    ratio = statistics.median(seconds["kept"]) / statistics.median(seconds["fresh"])
    print(f"  kept / fresh: {ratio:.2f}; pictures identical: {len(digests) == 1}")


if __name__ == "__main__":
    main()
