"""The peak of this process's own resident memory over a stretch of work, sampled.

Why not `ru_maxrss`: it counts pages of Ray's shared object store that the process has read (the
decode's head output is mapped, not copied) and cannot be reset between stages. The anonymous
resident memory (`RssAnon` in /proc/self/status: the process's heap, torch's activations) is what
an actor holds itself; a thread samples it every `INTERVAL_S` while the work runs, so a peak
shorter than that can be missed (the figures are a lower bound, good to a few MiB for layers that
take longer than the interval). Linux only; elsewhere the peak is None.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from collections.abc import Iterator

INTERVAL_S = 0.005


def anon_rss_mib() -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@contextmanager
def watched(peaks: dict, stage: str) -> Iterator[None]:
    """Run the body while sampling; `peaks[stage]` keeps the largest sample seen over all calls and
    `peaks[stage + " start"]` the memory the first call found (what earlier work left behind: the
    stage's own working set is the difference)."""
    first = anon_rss_mib()
    if first is None:
        yield
        return
    peaks.setdefault(f"{stage} start", first)
    top = [first]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(INTERVAL_S):
            now = anon_rss_mib()
            if now is not None and now > top[0]:
                top[0] = now

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        last = anon_rss_mib() or 0.0
        peaks[stage] = max(peaks.get(stage, 0.0), top[0], last)
