"""Ctrl-C and SIGTERM end a render with one line and 130/143, at any moment, however often sent.

Renders run as `python -m gigacanvas` in their own session (signals reach only them), joining
the test session's Ray cluster (conftest's `ray_cluster`, token auth as Ray's default) as drivers
of their own; the tiny model is built once, in the GIGACANVAS_CACHE that conftest sets for the
whole test session.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import LOOPBACK_RAY

RAY_DUMP = ("*** SIGTERM received", "PC: @")


@pytest.fixture(scope="module")
def head(ray_cluster):
    """The session's two-CPU Ray cluster: its GCS address, for a driver in another process.

    A signalled driver's actors end with its job; the cluster, started by this process, stays.
    """
    return ray_cluster.get_runtime_context().gcs_address


class Render:
    """A console render in its own process group, its stderr and stdout collected as they come."""

    def __init__(self, tmp_path: Path, address: str | None, steps: int = 100) -> None:
        self.store = tmp_path / "a.zarr"
        self.out = tmp_path / "a.png"
        argv = [sys.executable, "-m", "gigacanvas", "render", "--prompt", "x", "--width", "256", "--height", "256",
                "--steps", str(steps), "--actors", "1", "--cpus-per-actor", "1",
                "--store", str(self.store), "--out", str(self.out)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | LOOPBACK_RAY
        if address:
            argv += ["--address", address]
            env["RAY_AUTH_MODE"] = "token"
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, start_new_session=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, lines in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(iter(s.readline, "")), daemon=True).start()

    def wait_for(self, ready, what: str, timeout: float = 300) -> None:
        """Until `ready()`; `timeout` only tells a stalled render from a slow one (a loaded 2-core
        machine took over 120 s to start a render's actor and commit its first step)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the render ended or stalled before {what}: {''.join(self.stderr)[-3000:]}")
            time.sleep(0.05)

    def send(self, signum: int, group: bool) -> None:
        """`kill PID` reaches the driver alone; a terminal's Ctrl-C reaches its whole process group."""
        os.killpg(self.proc.pid, signum) if group else self.proc.send_signal(signum)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.2)  # let the reader threads drain
        return code, "".join(self.stderr)


def committed_a_step(render: Render) -> bool:
    """Band 0 has committed step 1: the store was noted as resumable before that (cluster/render.py),
    and 99 steps are left. An event rather than a pause, which a loaded machine may outlast."""
    try:
        return json.loads((render.store / "band-000.json").read_text())["step"] >= 1
    except (OSError, ValueError, KeyError):  # not written yet
        return False


def assert_one_clean_line(stderr: str, line: str) -> None:
    assert "Traceback" not in stderr and not any(mark in stderr for mark in RAY_DUMP), stderr[-3000:]
    ours = [x for x in stderr.splitlines() if x.startswith("gigacanvas: interrupted")]
    assert ours == [line], stderr[-3000:]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_before_the_store_exists_promises_no_resume(signum, code, tmp_path):
    render = Render(tmp_path, address=None)
    render.wait_for(lambda: any(x.startswith("gigacanvas:") for x in render.stderr), "its first line")
    render.send(signum, group=True)
    got, stderr = render.finish()
    assert got == code
    assert_one_clean_line(stderr, "gigacanvas: interrupted before anything was written; nothing to resume")
    assert not render.store.exists() and not render.out.exists()


def test_sigterm_mid_render_ends_like_ctrl_c_and_the_store_stays(head, tmp_path):
    render = Render(tmp_path, head)
    render.wait_for(lambda: committed_a_step(render), "a step was committed")
    render.send(signal.SIGTERM, group=False)
    code, stderr = render.finish()
    assert code == 143
    assert_one_clean_line(stderr, f"gigacanvas: interrupted; resume with: gigacanvas resume --store {render.store}")
    assert (render.store / "zarr.json").exists() and not render.out.exists()


def test_ctrl_c_twice_mid_render_ends_once_with_130(head, tmp_path):
    render = Render(tmp_path, head)
    render.wait_for(lambda: committed_a_step(render), "a step was committed")
    render.send(signal.SIGINT, group=True)
    time.sleep(0.1)
    render.send(signal.SIGINT, group=True)
    code, stderr = render.finish()
    assert code == 130
    assert_one_clean_line(stderr, f"gigacanvas: interrupted; resume with: gigacanvas resume --store {render.store}")


AFTER_THE_FIRST = """
import os, signal, sys, time
from gigacanvas.cluster import signals

signals.install()
try:
    with signals.guard():
        if sys.argv[1] == "interrupt":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
except KeyboardInterrupt as exc:
    print(*signals.ending(exc), flush=True)
signals.settle(0)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.5)
print("absorbed", flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("not reached")
"""


@pytest.mark.parametrize(("first", "code"), [("interrupt", 143), ("succeed", 0)])
def test_signals_after_the_first_outcome_never_raise_and_keep_its_code(first, code):
    run = subprocess.run([sys.executable, "-c", AFTER_THE_FIRST, first], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == code, run.stderr
    expected = ["absorbed"] if code == 0 else ["143 gigacanvas: interrupted before anything was written; nothing to resume", "absorbed"]
    assert run.stdout.splitlines() == expected
    assert run.stderr.splitlines() == ["gigacanvas: still cleaning up; press Ctrl-C again to quit at once"]


@pytest.mark.parametrize(
    ("errno_", "filename", "line", "code"),
    [
        (errno.ENOSPC, "/x/y", "gigacanvas: error: no space left on device writing /x/y", 2),
        (errno.EDQUOT, "/x/y", "gigacanvas: error: disk quota exceeded writing /x/y", 2),
        (errno.EROFS, "/x/y", "gigacanvas: error: read-only file system writing /x/y", 2),
        (errno.EACCES, "/x", "gigacanvas: error: permission denied accessing /x", 2),
        (errno.ENOSPC, None, "gigacanvas: error: no space left on device while writing a file (check --store and --out)", 2),
        (errno.EIO, "/x", "gigacanvas: internal error: OSError: [Errno 5] Input/output error: '/x' (GIGACANVAS_DEBUG=1 shows more)", 1),
    ],
)
def test_a_full_or_forbidden_disk_is_one_line_naming_the_path(errno_, filename, line, code, monkeypatch, capsys):
    """Not a signal, but the same promise from `main`: the run ends in one line, never a traceback."""
    from gigacanvas.cluster import cli

    def fail(args):
        raise OSError(errno_, os.strerror(errno_), filename)

    monkeypatch.setattr(cli, "_demo_model", fail)
    assert cli.main(["demo-model", "/nowhere"]) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_ray_inits_own_sigterm_exit_counts_as_our_first_signal(monkeypatch):
    """`ray.init` installs `sys.exit(15)` for SIGTERM until `connect` puts ours back."""
    from gigacanvas.cluster import signals

    assert isinstance(signals.from_ray_init(SystemExit(15)), SystemExit)  # not the console: Ray's exit stands
    monkeypatch.setattr(signals._state, "installed", True)
    monkeypatch.setattr(signals._state, "outcome", None)
    exc = signals.from_ray_init(SystemExit(15))
    assert isinstance(exc, KeyboardInterrupt) and exc.exit_code == 143
    assert isinstance(signals.from_ray_init(SystemExit(3)), SystemExit)


def test_the_first_signal_decides_the_code_even_if_ray_rewraps_it():
    import signal

    from gigacanvas.cluster import signals

    with signals.guard():
        signals._interrupt(signal.SIGTERM)  # what the handler records before raising
    code, line = signals.ending(KeyboardInterrupt())  # ray.get re-raised a plain KeyboardInterrupt
    assert code == 143 and "nothing to resume" in line


def test_a_stop_while_resuming_starts_up_promises_the_resume_not_nothing(tiny_model, tmp_path, monkeypatch):
    """`gigacanvas resume` (or a render finding its store) stopped while Ray starts: the store holds
    steps, so the line must name the resume, never 'nothing to resume' (a user would delete it)."""
    from types import SimpleNamespace

    from gigacanvas.cluster import placement, render as render_module, signals
    from gigacanvas.cluster.spec import RenderSpec

    store = SimpleNamespace(decoded=False, protocol="file", lease=None)
    claim = SimpleNamespace(store=store, resumable=True, release=lambda: None)
    monkeypatch.setattr(render_module, "claim_store", lambda *a, **k: claim)

    def stopped(address):
        raise KeyboardInterrupt

    monkeypatch.setattr(placement, "connect", stopped)
    monkeypatch.setattr(signals, "_state", signals._State())
    spec = RenderSpec(prompt="x", width=256, height=256, steps=2, model=tiny_model, out=str(tmp_path / "a.png"))
    with signals.guard(), pytest.raises(KeyboardInterrupt) as stop:
        render_module.render(spec, progress=False, notify=lambda line: None)
    code, line = signals.ending(stop.value)
    assert code == 130 and line.startswith("gigacanvas: interrupted; resume with: gigacanvas resume --store "), line
