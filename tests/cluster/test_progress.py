"""Progress where a job can see it: one plain line per step when stderr is not a terminal."""

import io

from gigacanvas.cluster.progress import denoise_progress, step_line


def test_a_step_line_gives_the_pace_and_the_time_left():
    assert step_line(5, 28, 0, 10.0) == "gigacanvas: step 5/28, 2.00 s/step, about 46 s left"
    assert step_line(10, 28, 8, 5.0) == "gigacanvas: step 10/28, 2.50 s/step, about 45 s left"  # resumed at 8
    assert step_line(1, 100, 0, 90.0).endswith("about 2 h 28 min left")
    assert step_line(2, 4, 0, 200.0).endswith("about 3 min 20 s left")
    assert step_line(4, 4, 0, 8.0).endswith("about 0 s left")


def test_without_a_terminal_each_step_is_one_line_and_tiles_print_nothing():
    stream = io.StringIO()
    with denoise_progress(4, 1, 9, True, stream) as shown:
        shown.tiles(9)
        shown.step(2)
        shown.tiles(9)
        shown.step(3)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["gigacanvas: step 2/4", "gigacanvas: step 3/4"]
    assert all("\r" not in line and "s/step" in line and line.endswith("left") for line in lines)


def test_no_progress_prints_nothing():
    stream = io.StringIO()
    with denoise_progress(4, 0, 9, False, stream) as shown:
        shown.step(1)
        shown.tiles(3)
    assert stream.getvalue() == ""


def test_a_terminal_gets_bars_not_lines():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    with denoise_progress(2, 0, 3, True, stream) as shown:
        shown.tiles(3)
        shown.step(1)
    assert "steps:" in stream.getvalue() and "gigacanvas: step" not in stream.getvalue()
