"""Seam visibility without weights: fixed against shifted windows, at overlaps of 0 to 256 px.

A real model gives every tile its own composition, and where two tiles meet their predictions
disagree; that disagreement is a seam. No weights are needed to measure how the tiling turns
disagreement into seams, only a model that disagrees the way a real one does. The stand-in here
is the exact denoiser of a Gaussian picture whose mean depends on where the tile sits:

    prior of a tile at (y, x):  N(m, s^2),  m = g (the canvas's shared layout, global coordinates)
                                               + h_yx (the tile's own composition, seeded by its
                                                 position, in tile coordinates)
    x0 estimate:  m + k (x_t - (1 - sigma) m),  k = (1 - sigma) s^2 / ((1 - sigma)^2 s^2 + sigma^2)
    velocity:     (x_t - x0) / sigma           (flow matching: x_t = (1 - sigma) x0 + sigma noise)

so at high noise a tile predicts its own mean (composition decided early, as in a real model) and
at low noise it follows x_t (details agree between tiles). Everything else is the render's own
code: the seeded noise, the planned or shifted grids (tiling/shift.py), a band reducer
(cluster/reducer.py: windows, tile-order float64 blend, SD3's flow-matching Euler scheduler)
on a memory:// store.

Scores, on the final latent. `e(line)` is the mean absolute difference across a line between two
pixel columns (or rows), over all channels and the whole line. "at seams" compares the lines where
some step's neighbouring tiles cross over (equal blend weights) with all other lines; "worst" is
the largest `e` of any line over the median line, which catches a seam wherever it is; both in
percent above 0, where a canvas with no seam sits ("one tile": the whole canvas in one tile, the
noise floor of "worst"). Tokens: latent pixels the model sees per step over the canvas's.

The torus (`--wrap xy`): a second table scores the step across the canvas's own edge (the last
column to the first, the last row to the first) the same way, "edge" against the median line, for
a render on the torus and a plain render of the same picture, both with shifted windows at their
default overlap (0). The shared layout is then periodic (a texture that should tile), so any step
at the edge is the tiling's, not the picture's. "worst line" counts the edge lines too.

    .venv/bin/python benchmarks/seams.py [--size 512] [--tile 128] [--steps 28] [--seeds 3] [--overlaps 0,64,128,256] [--table all|grid|torus]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time

import numpy as np

S2 = 0.25  # the prior's variance: picture texture of std 0.5 around the mean
LAYOUT_STD, COMPOSITION_STD = 1.0, 0.5  # g and h: the shared layout, each tile's own composition
WAVES = 6  # cosines per field and channel
CHANNELS = 4  # the synthetic model needs no more: every channel is scored alike


def _field(rng: np.random.Generator, shape: tuple[int, int], period: tuple[float, float], std: float, torus: bool = False):
    """A smooth random field (CHANNELS, h, w): sums of cosines with periods in `period`, as a function of coordinates;
    `torus`: each frequency rounded to a whole number of waves across `shape`, so the field tiles."""
    freq = rng.uniform(1 / period[1], 1 / period[0], (CHANNELS, WAVES)) * 2 * np.pi
    angle = rng.uniform(0, 2 * np.pi, (CHANNELS, WAVES))
    phase = rng.uniform(0, 2 * np.pi, (CHANNELS, WAVES))
    amp = std * np.sqrt(2 / WAVES)
    fy, fx = freq * np.sin(angle), freq * np.cos(angle)
    if torus:
        fy = np.round(fy * shape[0] / (2 * np.pi)) * 2 * np.pi / shape[0]
        fx = np.round(fx * shape[1] / (2 * np.pi)) * 2 * np.pi / shape[1]

    def at(y0: int, x0: int) -> np.ndarray:
        ys = np.arange(y0, y0 + shape[0], dtype=np.float64)[None, None, :, None]
        xs = np.arange(x0, x0 + shape[1], dtype=np.float64)[None, None, None, :]
        waves = np.cos(fy[..., None, None] * ys + fx[..., None, None] * xs + phase[..., None, None])
        return amp * waves.sum(axis=1)

    return at


class TileInconsistentModel:
    """The Gaussian-prior denoiser above: its prediction for a tile depends on where the tile sits."""

    def __init__(self, seed: int, height: int, width: int, tile: int, torus: bool = False):
        self.seed, self.tile = seed, tile
        self.layout = _field(np.random.default_rng([seed, 0]), (height, width), (tile / 2, 4 * tile), LAYOUT_STD, torus)(0, 0)
        self.cache: dict = {}

    def composition(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        if (y, x) not in self.cache:  # the same tile position gives the same composition at every step
            rng = np.random.default_rng([self.seed, 1, y, x])
            self.cache[(y, x)] = _field(rng, (h, w), (self.tile / 4, 2 * self.tile), COMPOSITION_STD)(0, 0)
        return self.cache[(y, x)]

    def velocity(self, x_t: np.ndarray, window, sigma: float) -> np.ndarray:
        # modulo the canvas: a tile crossing a torus's joined edge continues at the other side
        ys = np.arange(window.y, window.y + window.h) % self.layout.shape[1]
        xs = np.arange(window.x, window.x + window.w) % self.layout.shape[2]
        mean = self.layout[:, ys][:, :, xs] + self.composition(*window)
        k = (1 - sigma) * S2 / ((1 - sigma) ** 2 * S2 + sigma**2)
        x0 = mean + k * (x_t - (1 - sigma) * mean)
        return ((x_t - x0) / sigma).astype(np.float32)


def render(grids, steps: int, seed: int, tile: int, torus_layout: bool = False) -> np.ndarray:
    """The final latent of a render on `grids` with the stand-in model, through a band reducer."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from gigacanvas.cluster.reducer import Reducer
    from gigacanvas.storage import LatentStore
    from gigacanvas.tiling import initial_noise
    from gigacanvas.tiling.bands import join_rows

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)  # SD3's
    scheduler.set_timesteps(steps, device="cpu")
    url = f"memory://gc-seams/{time.perf_counter_ns()}.zarr"
    store = LatentStore(url)
    store.create({"seed": seed}, "bench", channels=CHANNELS, height=grids.height, width=grids.width, scale=8)
    store.write_noise(initial_noise(seed, CHANNELS, grids.height, grids.width))
    model = TileInconsistentModel(seed, grids.height, grids.width, tile, torus_layout)
    reducer = Reducer(url, 0, grids, scheduler, CHANNELS)
    reducer.load(0)
    try:
        for step in range(steps):
            grid, sigma = grids.grid(step), float(scheduler.sigmas[step])
            for batch in grid.batches(2):
                windows = join_rows([reducer.window_rows(batch)])
                reducer.add(batch, [model.velocity(w, grid.windows[i], sigma) for i, w in zip(batch, windows)])
            reducer.advance()
        return reducer.latent
    finally:
        store.clear(store.inspect())


def crossovers(starts: tuple[int, ...], tile: int, length: int | None = None) -> set[int]:
    """Lines (between pixel i and i + 1, named i) where neighbouring tiles' weights are equal; with
    `length` (a torus) also between the last tile and the first across the edge, modulo it."""
    if length is None:
        return {(b + a + tile) // 2 - 1 for a, b in itertools.pairwise(starts)}
    if len(starts) < 2:
        return set()
    pairs = [*itertools.pairwise(starts), (starts[-1], starts[0] + length)]
    return {((b + a + tile) // 2 - 1) % length for a, b in pairs}


def lines(latent: np.ndarray, axis: int, torus: bool) -> np.ndarray:
    """The mean absolute step across every line along `axis` (1 rows, 2 columns); on a torus the
    last, from the last pixel to the first across the edge, is a line like the others."""
    if torus:
        latent = np.concatenate([latent, latent.take([0], axis=axis)], axis=axis)
    other = (0, 2) if axis == 1 else (0, 1)
    return np.abs(np.diff(latent, axis=axis)).mean(axis=other)


def edge(latent: np.ndarray) -> float:
    """The step across the canvas's own edges (the last column to the first, the last row to the
    first) over the median line, in percent: what tiling the picture as a texture shows."""
    e_x = lines(latent, 2, torus=True)
    e_y = lines(latent, 1, torus=True)
    at = (e_x[-1] + e_y[-1]) / 2
    return 100 * (at / np.median(np.concatenate([e_x[:-1], e_y[:-1]])) - 1)


def scores(latent: np.ndarray, grids, steps: int) -> tuple[float, float]:
    """(at seams, worst), in percent: see the module docstring."""
    e_x = lines(latent, 2, grids.wrap_x)  # per column line
    e_y = lines(latent, 1, grids.wrap_y)  # per row line
    seams_x, seams_y = set(), set()
    for step in range(steps):
        grid = grids.grid(step)
        seams_x |= crossovers(grid.xs, grid.tile_w, grid.width if grid.wrap_x else None)
        seams_y |= crossovers(grid.ys, grid.tile_h, grid.height if grid.wrap_y else None)
    at = np.concatenate([e_x[sorted(seams_x)], e_y[sorted(seams_y)]])
    rest = np.concatenate([np.delete(e_x, sorted(seams_x)), np.delete(e_y, sorted(seams_y))])
    both = np.concatenate([e_x, e_y])
    at_seams = 100 * (at.mean() / rest.mean() - 1) if len(at) else 0.0
    return at_seams, 100 * (both.max() / np.median(both) - 1)


def _span(rows: list[tuple], i: int) -> str:
    return f"[{min(r[i] for r in rows):5.1f}, {max(r[i] for r in rows):5.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512, help="latent side (512: a 4096 px square)")
    parser.add_argument("--tile", type=int, default=128, help="latent tile side (128: SD3.5's 1024 px)")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--overlaps", default="0,64,128,256", help="overlaps in px, comma-separated")
    parser.add_argument("--table", default="all", choices=("all", "grid", "torus"), help="which table(s) to measure")
    args = parser.parse_args()
    size, tile, steps = args.size, args.tile, args.steps

    print(f"machine: {platform.processor() or platform.machine()}, CPU only; stand-in model, no weights")
    print(
        f"canvas {size}x{size} latent ({size * 8} px), tiles of {tile} latent ({tile * 8} px), {steps} steps, "
        f"{args.seeds} seeds; figures are medians [min, max] over the seeds"
    )
    if args.table in ("all", "grid"):
        _grid_table(args, [int(v) for v in args.overlaps.split(",")])
    if args.table in ("all", "torus"):
        _torus_table(args)


def _grid_table(args, overlaps: list[int]) -> None:
    from gigacanvas.tiling.shift import StepGrids

    size, tile, steps = args.size, args.tile, args.steps
    print(f"{'grid':<8} {'overlap px':>10} {'tiles/step':>10} {'tokens':>7} {'at seams %':>22} {'worst line %':>22}")
    configs = [("one tile", 0, None)] + [(kind, px, kind) for kind in ("fixed", "shifted") for px in overlaps]
    for name, px, kind in configs:
        rows = []
        for seed in range(args.seeds):
            if kind is None:
                grids = StepGrids(size, size, size, 0)
            else:
                grids = StepGrids(size, size, tile, px // 8, seed=seed if kind == "shifted" else None)
            latent = render(grids, steps, seed, tile)
            tiles = statistics.mean(len(grids.grid(s)) for s in range(steps))
            tokens = statistics.mean(grids.tokens(s) for s in range(steps))
            rows.append((tiles, tokens, *scores(latent, grids, steps)))
        tiles, tokens, at, worst = (statistics.median(c) for c in zip(*rows))
        overlap = "-" if kind is None else str(px)
        print(
            f"{name:<8} {overlap:>10} {tiles:>10.1f} {tokens:>6.2f}x {at:>6.1f} {_span(rows, 2)} {worst:>6.1f} {_span(rows, 3)}",
            flush=True,
        )


def _torus_table(args) -> None:
    """The edge of a texture that should tile (a periodic layout): rendered on the torus, and plain."""
    from gigacanvas.tiling.shift import StepGrids

    size, tile, steps = args.size, args.tile, args.steps
    print("torus: a periodic layout, shifted windows, overlap 0 px (the default); the edge: last column/row to the first")
    print(f"{'render':<13} {'tiles/step':>10} {'tokens':>7} {'edge %':>22} {'at seams %':>22} {'worst line %':>22}")
    for name, wrap in (("wrap xy", True), ("no wrap", False)):
        rows = []
        for seed in range(args.seeds):
            grids = StepGrids(size, size, tile, 0, seed=seed, wrap_y=wrap, wrap_x=wrap)
            latent = render(grids, steps, seed, tile, torus_layout=True)
            tiles = statistics.mean(len(grids.grid(s)) for s in range(steps))
            tokens = statistics.mean(grids.tokens(s) for s in range(steps))
            at, worst = scores(latent, grids, steps)
            rows.append((tiles, tokens, edge(latent), at, worst))
        tiles, tokens, at_edge, at, worst = (statistics.median(c) for c in zip(*rows))
        print(
            f"{name:<13} {tiles:>10.1f} {tokens:>6.2f}x {at_edge:>6.1f} {_span(rows, 2)} {at:>6.1f} {_span(rows, 3)} "
            f"{worst:>6.1f} {_span(rows, 4)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
