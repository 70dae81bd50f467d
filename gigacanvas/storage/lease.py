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

Writers in other processes (the band reducers, Ray actors that open the store by URL) hold no
lease, so the holder hands each a `LeaseTicket` (`StoreLease.ticket()`: its key's number and its
token, picklable) and they check it before every commit (`LeaseTicket.check`, which
`LatentStore(url, ticket=...)` runs): the ticket is good while its number is the highest lease key
and that key still holds its token. A higher number means another render took the store over; no
key at its number means the holder released it (the render ended); the same number with another
token means the store was released and taken again. Each stops the writer before it writes. The
check is one listing and one small read, on purpose not cached: it must see a takeover that
happened a moment ago.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

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


def _top(location: Location) -> int:
    """The highest lease number at `location`, 0 if there is none."""
    numbers = (_number(n) for n in location.names(PREFIX) if n.endswith(".json"))
    return max((n for n in numbers if n >= 0), default=0)


def _holder(location: Location, number: int) -> dict | None:
    """The record in key `number`: None if the key is missing, {} if it cannot be read as one."""
    raw = location.read(_key(number))
    if raw is None:
        return None
    try:
        holder = json.loads(raw) if raw else {}
    except ValueError:
        holder = {}
    return holder if isinstance(holder, dict) else {}


@dataclass(frozen=True)
class LeaseTicket:
    """A holder's lease as a writer in another process sees it: check it before every write.

    Picklable, so it travels to Ray actors as an argument. The token (a random uuid per
    `StoreLease`) tells this holder's key from a later render's key of the same number: after a
    release the numbers start again from 1.
    """

    number: int
    token: str
    what: str = "render"

    def check(self, location: Location) -> None:
        """Raise unless this ticket's lease is still the store's; one listing and one small read.

        Cost (benchmarks/lease_ticket.py, local folder, 4 lease keys beside the store's arrays and
        records, shared 2-core AMD EPYC): median 0.15-0.19 ms (min 0.10), 0.4-0.5% of the commit of
        one 8 MiB band (median 34-37 ms) that it guards.
        """
        top = _top(location)
        holder = _holder(location, self.number) if top == self.number else None
        if holder is not None and holder.get("token") == self.token:
            return
        if top > self.number or holder is not None:  # a higher number, or ours taken again
            raise RenderError(
                f"store {location.url} was taken over by another {self.what} (lease {self.number} is no longer "
                f"this {self.what}'s); this reducer stops without writing"
            )
        raise RenderError(
            f"store {location.url} was released by its {self.what} (lease {self.number} is gone: the {self.what} "
            f"ended or was stopped); this reducer stops without writing"
        )


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
        top = _top(self.location)
        if not top:
            return 0, None
        holder = _holder(self.location, top)
        return top, {} if holder is None else holder  # gone since the listing: unreadable, never stolen on a guess

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

    def holder(self) -> str | None:
        """Who holds the store now ('pid N on HOST, last heartbeat S s ago'), None if nobody does.

        Reads only: for `gigacanvas status`, from any machine, while a render runs.
        """
        _, holder = self._current()
        if holder is None or self._is_free(holder):
            return None
        return self.describe(holder)

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

    def ticket(self) -> LeaseTicket:
        """This lease for writers in other processes (band reducers); see `LeaseTicket`."""
        if self.number is None:
            raise RuntimeError("StoreLease.ticket() before acquire(): there is no lease to hand out")
        return LeaseTicket(self.number, self._token, self.what)

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
