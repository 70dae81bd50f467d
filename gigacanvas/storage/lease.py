"""One render per store: a lease with a holder, a heartbeat and a stated takeover timeout.

Two renders writing one store interleave their steps and leave a picture of neither. The lease is
a numbered key, `lease-000007.json`; the holder is whoever created the highest number. Taking the
lease is creating the next number with an atomic create (`Location.create`: a hard link on a
disk, a conditional put on object storage), so of two renders racing for a store exactly one
wins, whether the store is new or its old holder died.

The holder rewrites its key every `timeout / 4` seconds. A lease is free when its heartbeat is
older than the timeout (`GIGACANVAS_LEASE_TIMEOUT`, default 60 s), or at once when the holder ran
on this host and its process is gone (a Ctrl-C'd or killed render resumes without waiting). A
holder that finds a higher number than its own has lost the store (its heartbeat stopped for
longer than the timeout) and must stop writing: `check()` raises then, before every commit.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.location import Location

PREFIX = "lease-"
TIMEOUT_S = float(os.environ.get("GIGACANVAS_LEASE_TIMEOUT", "60"))


def _number(name: str) -> int:
    try:
        return int(name[len(PREFIX) :].split(".", 1)[0])
    except ValueError:
        return -1


def _key(number: int) -> str:
    return f"{PREFIX}{number:06d}.json"


def _process_started(pid: int) -> float | None:
    """When `pid` started on this host, or None if no such process runs (pid reuse is caught)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return -1.0  # exists but cannot be inspected: assume alive


class StoreLease:
    """This process's claim on one store; `acquire()`, `check()` before writes, `release()`."""

    def __init__(self, location: Location, timeout_s: float = TIMEOUT_S, what: str = "render"):
        self.location = location
        self.timeout_s = timeout_s
        self.what = what
        self.number: int | None = None
        self._token = uuid.uuid4().hex
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading --------------------------------------------------------------------------------
    def _current(self) -> tuple[int, dict | None]:
        numbers = [_number(n) for n in self.location.names(PREFIX) if n.endswith(".json")]
        numbers = [n for n in numbers if n >= 0]
        if not numbers:
            return 0, None
        top = max(numbers)
        raw = self.location.read(_key(top))
        try:
            holder = json.loads(raw) if raw else {}
        except ValueError:
            holder = {}
        return top, holder if isinstance(holder, dict) else {}

    def _is_free(self, holder: dict) -> bool:
        heartbeat = holder.get("heartbeat")
        if not isinstance(heartbeat, (int, float)):
            return False  # unreadable: someone is writing it; never steal on a guess
        if time.time() - heartbeat > self.timeout_s:
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            started = _process_started(holder["pid"])
            return started is None or (started > 0 and abs(started - holder.get("started", started)) > 1.0)
        return False

    def describe(self, holder: dict) -> str:
        age = time.time() - holder["heartbeat"] if isinstance(holder.get("heartbeat"), (int, float)) else None
        seen = f"last heartbeat {age:.0f} s ago" if age is not None else "just taken"
        return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, {seen}"

    # -- holding --------------------------------------------------------------------------------
    def _record(self) -> bytes:
        import psutil

        return json.dumps(
            {
                "token": self._token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": psutil.Process().create_time(),
                "heartbeat": time.time(),
                "timeout_s": self.timeout_s,
            }
        ).encode()

    def acquire(self) -> None:
        """Take the store or refuse with who holds it; a dead holder is taken over."""
        for _ in range(5):
            top, holder = self._current()
            if holder is not None and not self._is_free(holder):
                raise UsageError(
                    f"store {self.location.url} is in use by another {self.what} ({self.describe(holder)}); "
                    f"wait for it to end or pass another --store (a holder silent for {self.timeout_s:g} s is taken over)"
                )
            if self.location.create(_key(top + 1), self._record()):
                self.number = top + 1
                for old in range(max(1, top - 2), top + 1):  # tidy the last few dead holders' keys
                    self.location.remove(_key(old))
                self._start_heartbeat()
                return
        raise UsageError(f"store {self.location.url} is being taken by another {self.what} right now; try again")

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="gigacanvas-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.timeout_s / 4):
            try:
                if self._current()[0] != self.number:
                    self._lost.set()
                    return
                self.location.put(_key(self.number), self._record())
            except Exception:  # noqa: BLE001 - a transient store error: try again next beat
                continue

    def check(self) -> None:
        """Raise if another render took the store; call before every write that matters."""
        if self._lost.is_set() or (self.number is not None and self._current()[0] != self.number):
            self._lost.set()
            raise RenderError(
                f"store {self.location.url} was taken over by another {self.what} (this one stopped "
                f"heartbeating for over {self.timeout_s:g} s); stopping without writing more"
            )

    def release(self) -> None:
        """Give the store back (only our own key is removed, never a successor's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.number is not None and not self._lost.is_set():
            try:
                if self._current()[0] == self.number:
                    self.location.remove(_key(self.number))
            except Exception:  # noqa: BLE001 - a lease left behind is taken over after the timeout
                pass
        self.number = None
