"""Ctrl-C and SIGTERM end a run the same way: one line, exit 130 or 143, every `finally` run once.

`kill`, `ray job stop` and Kubernetes send SIGTERM; Python's default for it kills the process
without running any clean-up, and Ray's driver replaces it in `ray.init` with a C++ stack dump.
The console installs one handler for both signals (and reinstalls it after `ray.init`, see
`placement.connect`): inside `guard()`, the first signal raises `Interrupted`, a
KeyboardInterrupt, so the render's `finally` blocks leave the store resumable. Once that first
signal is handled, or once the work is done, later signals raise nothing: the next one says that
clean-up is still running, the one after ends the process at once with the first outcome's code.

Whether an interruption can be resumed depends on whether the store exists; the render says so
with `note_store(url)` as soon as its store is created or resumed, and from then on the line that
ends the run, interrupted or failed, names the command that finishes it (`resume_hint`, shell-
quoted). Hand-written on the standard library's `signal`: no library orders Ray's handlers
against ours.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread where the signal found it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class _State:
    installed = False  # the console owns this process's signals (never a notebook or a test)
    working = False  # inside guard(): a first signal interrupts the work
    outcome: int | None = None  # the exit code once the first signal or the end of the work decided it
    reminded = False
    store: str | None = None


_state = _State()


def note_store(url: str) -> None:
    """Say that the store at `url` exists, so that an interruption from now on can be resumed."""
    _state.store = url


def resume_command(url: str) -> str:
    """`gigacanvas resume --store URL`, ready to paste into a shell from any folder."""
    if "://" not in url:  # a plain path: absolute, as the store layer reads it (~ expanded)
        url = os.path.abspath(os.path.expanduser(url))
    return f"gigacanvas resume --store {shlex.quote(url)}"


def resume_hint() -> str:
    """'; resume with: gigacanvas resume --store URL' once the render's store exists, else ''."""
    return f"; resume with: {resume_command(_state.store)}" if _state.store else ""


def install() -> None:
    """Route SIGINT and SIGTERM to this module for the rest of the process (the console's entry)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in HANDLED:
        signal.signal(signum, _on_signal)
    _state.installed = True


def reinstall() -> None:
    """After `ray.init`, whose core worker takes SIGTERM over: ours again, if the console installed it."""
    if _state.installed and threading.current_thread() is threading.main_thread():
        for signum in HANDLED:
            signal.signal(signum, _on_signal)


def from_ray_init(exc: SystemExit) -> BaseException:
    """What to raise for a SystemExit out of `ray.init`, whose own SIGTERM handler exits with 15.

    For the console that SIGTERM is ours, a first signal like any other; elsewhere (a notebook)
    Ray's exit stands.
    """
    if not _state.installed or exc.code != signal.SIGTERM:
        return exc
    return _interrupt(signal.SIGTERM)


@contextmanager
def guard() -> Iterator[None]:
    """The work a first signal interrupts; after it, signals no longer raise (Ray's shutdown runs then)."""
    _state.working, _state.outcome, _state.reminded, _state.store = True, None, False, None
    try:
        yield
    finally:
        _state.working = False


def settle(code: int) -> None:
    """Record the run's exit code, unless a signal already decided it; later signals exit with it."""
    if _state.outcome is None:
        _state.outcome = code


def ending(exc: KeyboardInterrupt) -> tuple[int, str]:
    """The exit code and the one line for an interruption, promising a resume only if the store exists."""
    # The first signal's code: Ray's ray.get may re-raise our Interrupted as a plain KeyboardInterrupt.
    code = _state.outcome if _state.outcome is not None else (exc.exit_code if isinstance(exc, Interrupted) else 130)
    if _state.store:
        return code, f"gigacanvas: interrupted{resume_hint()}"
    return code, "gigacanvas: interrupted before anything was written; nothing to resume"


def _interrupt(signum: int) -> Interrupted:
    if _state.outcome is None:
        _state.outcome = 128 + signum
    return Interrupted(signum)


def _on_signal(signum: int, frame: object) -> None:
    if _state.working and _state.outcome is None:
        raise _interrupt(signum)
    if not _state.reminded:
        _state.reminded = True
        print("gigacanvas: still cleaning up; press Ctrl-C again to quit at once", file=sys.stderr, flush=True)
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_state.outcome if _state.outcome is not None else 128 + signum)
