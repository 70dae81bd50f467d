"""`gigacanvas bench`: how well the step loop spreads tiles over actors, measured on this cluster.

For each actor count a fresh driver process (`python -m gigacanvas.cluster.bench`, so one run's
peak memory does not carry into the next) renders a canvas with the simulated model
(actors/models/simulated.py): planning, the store, placement, transfers, dispatch, blending and the
scheduler are the real ones, only the model's tile call is a sleep of T seconds, and the VAE
decode and the picture are skipped. The store lives in a temporary folder removed at the end.

Reported per actor count N: s/step, the denoise wall time over the steps; the ideal, tiles x T / N,
or with one actor F times slower tiles x T / (N - 1 + 1/F), the actors' combined speed; the
efficiency, ideal / measured; the driver's peak RSS and the largest band reducer's peak RSS. Hand-written: no library times a Ray pipeline against its ideal.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from gigacanvas.cluster.spec import MAX_INT, RenderSpec
from gigacanvas.errors import GigacanvasError, RenderError, UsageError

CPUS_PER_ACTOR = 0.05  # logical CPUs: 32 sleeping actors fit on a laptop's local Ray
PROMPT = "gigacanvas bench"
RESULT_MARK = "gigacanvas-bench-result "  # the child's one line of JSON on stdout starts with this
MAX_ACTOR_COUNTS = 64


@dataclass(frozen=True)
class BenchOptions:
    """One bench: a canvas, a simulated tile time, and the actor counts to measure it with."""

    width: int
    height: int
    tile_seconds: float
    actors: tuple[int, ...]
    steps: int = 28
    slow_actor: float | None = None  # one actor this many times slower; None: all alike
    tile_batch: int = 2
    address: str | None = None  # a Ray cluster to join; None: RAY_ADDRESS, else a new local one each run

    def __post_init__(self) -> None:
        from gigacanvas.actors.models.simulated import MAX_SLOW, MAX_TILE_SECONDS

        if not 0 <= self.tile_seconds <= MAX_TILE_SECONDS:  # also refuses nan and inf
            raise UsageError(
                f"tile-seconds {self.tile_seconds!r} must be a finite number from 0 to {MAX_TILE_SECONDS:g}"
            )
        if self.slow_actor is not None and not 1 <= self.slow_actor <= MAX_SLOW:
            raise UsageError(f"slow-actor {self.slow_actor!r} must be a finite factor from 1 to {MAX_SLOW:g}, e.g. 2")
        if not self.actors:
            raise UsageError("actors is empty; pass counts such as --actors 1,2,4")
        if len(self.actors) > MAX_ACTOR_COUNTS:
            raise UsageError(f"actors lists {len(self.actors)} counts; at most {MAX_ACTOR_COUNTS} are accepted")
        for count in self.actors:
            if not 1 <= count <= MAX_INT["actors"]:
                raise UsageError(f"actors {count} must be from 1 to {MAX_INT['actors']}")
        self.spec(self.actors[0], Path(tempfile.gettempdir()), 0)  # sizes, steps, batch: as a render checks them

    @property
    def model(self) -> str:
        from gigacanvas.actors.models.simulated import simulated_model

        return simulated_model(self.tile_seconds, self.slow_actor or 1.0)

    def spec(self, actors: int, folder: Path, run: int) -> RenderSpec:
        """The render of one run (validated like any render's: sizes, steps, batch)."""
        return RenderSpec(
            prompt=PROMPT,
            width=self.width,
            height=self.height,
            steps=self.steps,
            model=self.model,
            precision="fp32",  # every device runs it, so no fallback notice; the sleep ignores it
            tile_batch=self.tile_batch,
            compose="none",  # the step loop of the whole canvas is what it times (a composition is a smaller render)
            actors=actors,
            cpus_per_actor=CPUS_PER_ACTOR,
            store=str(folder / f"run{run}.zarr"),
            out=str(folder / f"run{run}.png"),  # never written: the bench stops after the denoise
            address=self.address or os.environ.get("RAY_ADDRESS") or None,
        )

    def ideal_seconds_per_step(self, tiles: int, actors: int) -> float:
        """The step time if the actors did nothing but their tiles, at their combined speed."""
        speed = actors - 1 + 1 / self.slow_actor if self.slow_actor else actors  # in tiles per T
        return tiles * self.tile_seconds / speed


def parse_actors(text: str) -> tuple[int, ...]:
    """`1,2,8` -> (1, 2, 8); refuses anything but comma-separated whole numbers."""
    counts = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"actors {text[:40]!r} is not a comma-separated list of whole numbers, e.g. 1,2,8")
        counts.append(int(part))
    return tuple(counts)


@dataclass(frozen=True)
class BenchRow:
    """One actor count's figures."""

    actors: int
    tiles: int
    seconds_per_step: float
    ideal_seconds_per_step: float
    driver_peak_mib: float
    reducers_peak_mib: float | None = None  # the largest band reducer's peak RSS

    @property
    def efficiency(self) -> float | None:
        if not self.ideal_seconds_per_step or not self.seconds_per_step:
            return None  # T = 0 measures pure overhead: there is no ideal to compare with
        return self.ideal_seconds_per_step / self.seconds_per_step

    def line(self) -> str:
        eff = "-" if self.efficiency is None else f"{self.efficiency:.2f}"
        reducers = "-" if self.reducers_peak_mib is None else f"{self.reducers_peak_mib:.0f} MiB"
        return (
            f"actors {self.actors:>3}  tiles/step {self.tiles:>5}  s/step {self.seconds_per_step:8.3f}  "
            f"ideal {self.ideal_seconds_per_step:8.3f}  efficiency {eff:>4}  "
            f"driver peak {self.driver_peak_mib:6.0f} MiB  reducers peak {reducers}"
        )


def machine() -> str:
    """'AMD EPYC, 2 cores, 23.5 GiB': the CPU model of this (the driver's) machine."""
    import psutil

    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    if not name and sys.platform == "darwin":
        done = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False)
        name = done.stdout.strip()
    name = name or platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GiB"


def run_bench(options: BenchOptions, emit: Callable[[str], None] = print) -> list[BenchRow]:
    """Measure every actor count in turn, emitting the header and one line per count as it ends."""
    from importlib.metadata import version

    from gigacanvas.cluster.plan import plan

    folder = Path(tempfile.mkdtemp(prefix="gigacanvas-bench-"))
    try:
        specs = [options.spec(count, folder, run) for run, count in enumerate(options.actors)]
        the_plan = plan(specs[0])  # every refusal (sizes, memory) before any run starts
        tiles, spec, grid = the_plan.tiles_per_step, the_plan.spec, the_plan.grid
        scale = the_plan.info.vae_scale_factor
        cluster = f"Ray cluster at {specs[0].address}" if specs[0].address else "a new local Ray per actor count"
        emit(
            f"gigacanvas bench: machine {machine()}; Ray {version('ray')}; {cluster}, {CPUS_PER_ACTOR:g} CPU per actor"
        )
        slow = f", one actor {options.slow_actor:g}x slower" if options.slow_actor else ""
        emit(
            f"gigacanvas bench: {spec.width}x{spec.height} px, {tiles} tiles/step of "
            f"{grid.tile_w * scale}x{grid.tile_h * scale} px "
            f"(overlap {spec.tile_overlap}, batch {spec.tile_batch}), {spec.steps} steps, simulated model "
            f"sleeping {options.tile_seconds:g} s per tile{slow}; decode skipped"
        )
        rows = []
        for spec in specs:
            figures = _run_child(spec, _local_cpus(spec.actors))
            row = BenchRow(
                actors=figures["actors"],
                tiles=figures["tiles"],
                seconds_per_step=figures["seconds_per_step"],
                ideal_seconds_per_step=options.ideal_seconds_per_step(figures["tiles"], figures["actors"]),
                driver_peak_mib=figures["driver_peak_mib"],
                reducers_peak_mib=figures.get("reducers_peak_mib"),
            )
            rows.append(row)
            emit(row.line())
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _local_cpus(actors: int) -> int:
    """Logical CPUs for a local cluster: the actors' slices, plus one for whatever else runs."""
    return max(2, math.ceil(actors * CPUS_PER_ACTOR) + 1)


def _run_child(spec: RenderSpec, num_cpus: int) -> dict:
    """One run in a fresh driver process; its figures, or its error raised here."""
    payload = json.dumps({"spec": asdict(spec), "num_cpus": num_cpus})
    proc = subprocess.Popen(
        [sys.executable, "-m", "gigacanvas.cluster.bench", payload],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate()
    except BaseException:  # Ctrl-C or SIGTERM: let the child release its store and actors first
        _stop(proc)
        raise
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        last = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise RenderError(f"the bench run with {spec.actors} actor(s) ended without figures ({last[:300]})")
    result = json.loads(lines[-1].removeprefix(RESULT_MARK))
    if "error" in result:
        kind = UsageError if result.get("exit_code") == 2 else RenderError
        raise kind(f"bench run with {spec.actors} actor(s): {result['error']}")
    return result


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # a terminal's Ctrl-C sent it one already; a SIGTERM did not
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _measure(payload: dict) -> dict:
    """The child's work: one render, stopped after the denoise; its figures."""
    import ray

    from gigacanvas.cluster.render import render

    spec = RenderSpec(**payload["spec"])
    try:
        if spec.address is None:  # our own cluster, sized for the actors, CPU only like the model
            ray.init(
                address="local",
                num_cpus=payload["num_cpus"],
                num_gpus=0,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        result = render(spec, progress=False, notify=lambda line: None, denoise_only=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()  # leaves a joined cluster running; ends our own
    return {
        "actors": result.actors,
        "tiles": result.tiles_per_step,
        "seconds_per_step": result.seconds_per_step,
        "driver_peak_mib": peak_rss_mib(),
        "reducers_peak_mib": result.reducers_peak_mib,
    }


def _child_main(argv: list[str]) -> int:
    code = 0
    try:
        result = _measure(json.loads(argv[0]))
    except GigacanvasError as exc:
        result, code = {"error": str(exc), "exit_code": exc.exit_code}, exc.exit_code
    except KeyboardInterrupt:
        result, code = {"error": "interrupted", "exit_code": 130}, 130
    except Exception as exc:  # noqa: BLE001 - reported by the parent in one line
        result, code = {"error": f"internal error: {exc.__class__.__name__}: {exc}", "exit_code": 1}, 1
    print(RESULT_MARK + json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
