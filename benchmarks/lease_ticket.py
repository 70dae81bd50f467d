"""What a reducer's lease check costs next to the band commit it guards (local folder, CPU).

A reducer's store checks its `LeaseTicket` before every band commit (every step): one listing of
the store's folder and one read of the lease key. Measured on a store like a render's (its arrays,
two band records, four lease keys: the holder's and three a crash left untidied), beside a commit
of one 128-row band of a 1024-wide latent (16 channels, 8 MiB). Printed: median, min and max of
each, and the check's share of a commit (goal: under 1%).

    .venv/bin/python benchmarks/lease_ticket.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from gigacanvas.storage.lease import LeaseTicket, StoreLease
from gigacanvas.storage.store import LatentStore

CHANNELS, HEIGHT, WIDTH, BANDS = 16, 256, 1024, 2


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = str(Path(folder) / "s.zarr")
        driver = LatentStore(url)
        driver.create({"seed": 1}, "bench", channels=CHANNELS, height=HEIGHT, width=WIDTH, scale=1, bands=BANDS)
        stale = json.dumps({"token": "old", "host": "elsewhere", "heartbeat": 0.0}).encode()
        driver.location.put("lease-000003.json", stale)  # a dead holder: the lease below takes number 4
        lease = StoreLease(driver.location)
        lease.acquire()
        try:
            for number in range(1, 4):  # keys a crash left untidied below the holder's: listed too
                driver.location.put(f"lease-{number:06d}.json", stale)
            driver.write_noise(np.zeros((CHANNELS, HEIGHT, WIDTH), np.float32))
            ticket: LeaseTicket = lease.ticket()
            reducer = LatentStore(url, ticket=ticket)
            y0, y1 = reducer.bands[0]
            rows = np.random.default_rng(0).standard_normal((CHANNELS, y1 - y0, WIDTH)).astype(np.float32)
            keys = len(driver.location.names("lease-"))
            check = _timed(lambda: ticket.check(reducer.location), args.repeat)
            steps = iter(range(1, 10**6))
            commit = _timed(lambda: reducer.commit_band(0, rows, next(steps)), max(10, args.repeat // 10))
        finally:
            lease.release()
    print(f"machine: {_cpu()}; local folder, {keys} lease keys, band of {y1 - y0} x {WIDTH} x {CHANNELS} float32")
    print(f"{'what':22} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'runs':>5}")
    for name, times in (("LeaseTicket.check", check), ("commit_band (with it)", commit)):
        ms = [t * 1e3 for t in times]
        print(f"{name:22} {statistics.median(ms):10.3f} {min(ms):8.3f} {max(ms):8.3f} {len(ms):5}")
    print(f"check / commit: {statistics.median(check) / statistics.median(commit):.2%} (goal: under 1%)")


if __name__ == "__main__":
    main()
