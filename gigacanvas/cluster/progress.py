"""Progress of the denoise: bars on a terminal, one plain line per step anywhere else.

Job logs (`ray job logs`, `kubectl logs`) keep every byte a bar redraws, so when stderr is not a
terminal each finished step is one line with its pace and an estimate of the time left; tqdm's
bars stay for people at a terminal. The estimate is the mean of the steps run so far in this
process (a resumed render does not count the steps it did not run).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass
class StepProgress:
    """`step(n)` when step n is committed everywhere, `tiles(k)` when k more tiles are predicted."""

    step: Callable[[int], None]
    tiles: Callable[[int], None]


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s" if rest >= 60 else f"{rest} s"


def step_line(step: int, total: int, started_at: int, elapsed: float) -> str:
    """'gigacanvas: step 5/28, 2.31 s/step, about 53 s left' (pace over the steps run here)."""
    run = step - started_at
    pace = elapsed / run if run else 0.0
    return f"gigacanvas: step {step}/{total}, {pace:.2f} s/step, about {duration(pace * (total - step))} left"


@contextlib.contextmanager
def denoise_progress(total: int, done: int, tiles_per_step: int, enabled: bool, stream=None) -> Iterator[StepProgress]:
    """Bars when `stream` (stderr) is a terminal, else step lines; nothing when not `enabled`."""
    stream = stream or sys.stderr
    if not enabled:
        yield StepProgress(lambda step: None, lambda n: None)
        return
    if stream.isatty():
        from tqdm.auto import tqdm

        # Tiles of the next step start before the last of this one ends: one tile bar for all.
        with tqdm(total=total, initial=done, desc="steps", unit="step", file=stream) as bar, tqdm(
            total=tiles_per_step * (total - done), desc="tiles", unit="tile", leave=False, file=stream
        ) as tiles_bar:
            yield StepProgress(lambda step: bar.update(1), tiles_bar.update)
        return
    t0 = time.perf_counter()

    def line(step: int) -> None:
        print(step_line(step, total, done, time.perf_counter() - t0), file=stream, flush=True)

    yield StepProgress(line, lambda n: None)
