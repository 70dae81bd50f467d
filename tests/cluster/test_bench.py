"""`gigacanvas bench`: its refusals, its arithmetic, and one tiny run through the command.

No timing is asserted: the figures belong to docs/benchmarks.md, not to tests.
"""

import os
import re
import subprocess
import sys
import tempfile

import pytest

from gigacanvas.cluster.bench import BenchOptions, BenchRow, parse_actors
from gigacanvas.cluster.cli import main
from gigacanvas.cluster.plan import plan


def _argv(**changes: str) -> list[str]:
    flags = {"--width": "512", "--height": "512", "--tile-seconds": "0.01", "--actors": "1,2", **changes}
    return ["bench", *[part for pair in flags.items() for part in pair]]


ROW = re.compile(
    r"^actors +(\d+)  tiles/step +(\d+)  s/step +[\d.]+  ideal +[\d.]+  efficiency +([\d.]+|-)  "
    r"driver peak +\d+ MiB  reducers peak +(-|\d+ MiB)$"
)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--actors", "0", "actors 0"),
        ("--actors", "1,,2", "comma-separated"),
        ("--width", "1000", "width 1000 is not a positive multiple of 16"),
        ("--tile-seconds", "-0.5", "tile-seconds -0.5"),
        ("--tile-seconds", "nan", "tile-seconds nan"),
        ("--tile-seconds", "inf", "tile-seconds inf"),
        ("--slow-actor", "0.5", "slow-actor 0.5"),
        ("--steps", "0", "steps 0"),
        ("--frobnicate", "1", "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flag, value, message, capsys):
    assert main(_argv(**{flag: value})) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("gigacanvas: error: ") and message in err


def test_an_8192_canvas_plans_81_native_tiles_of_the_simulated_model(tmp_path):
    options = BenchOptions(width=8192, height=8192, tile_seconds=0.2, actors=(8,), steps=4)
    the_plan = plan(options.spec(8, tmp_path, 0))
    # shifted windows without overlap: the 81 tiles a fixed grid with 128 px overlap has (benchmarks/seams.py)
    assert len(the_plan.grid) == 81 and the_plan.spec.tile_size == 1024 and the_plan.spec.tile_overlap == 0
    assert the_plan.grids.shifted


def test_ideal_is_the_actors_combined_speed_and_efficiency_its_ratio():
    even = BenchOptions(width=512, height=512, tile_seconds=0.2, actors=(8,))
    assert even.ideal_seconds_per_step(81, 8) == pytest.approx(81 * 0.2 / 8)
    mixed = BenchOptions(width=512, height=512, tile_seconds=0.2, actors=(8,), slow_actor=2.0)
    assert mixed.ideal_seconds_per_step(81, 8) == pytest.approx(81 * 0.2 / 7.5)
    assert BenchRow(8, 81, 4.0, 2.0, 512.0).efficiency == pytest.approx(0.5)
    assert BenchRow(8, 81, 4.0, 0.0, 512.0).efficiency is None  # T = 0: overhead only
    assert ROW.match(BenchRow(8, 81, 4.0, 2.0, 512.0).line())
    assert parse_actors(" 1, 2,8") == (1, 2, 8)


def test_a_tiny_bench_prints_a_header_and_one_row_per_actor_count(tmp_path):
    # TMPDIR shows that the bench's store folder is removed; Ray keeps its usual short socket paths.
    env = {**os.environ, "TMPDIR": str(tmp_path), "RAY_TMPDIR": tempfile.gettempdir()}
    env.pop("RAY_ADDRESS", None)
    argv = _argv(**{"--steps": "2", "--slow-actor": "3"})  # one of the two actors slow: worker numbering runs too
    command = [sys.executable, "-m", "gigacanvas", *argv]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.search(r"machine .+; Ray \d+\.\d+", lines[0])
    assert "512x512 px, 1 tiles/step" in lines[1] and "one actor 3x slower" in lines[1]
    rows = [ROW.match(line) for line in lines[2:]]
    assert all(rows) and [(m[1], m[2]) for m in rows] == [("1", "1"), ("2", "1")], done.stdout
    assert all(m[4] != "-" for m in rows)  # the band reducers report their memory
    assert not list(tmp_path.glob("gigacanvas-bench-*"))
