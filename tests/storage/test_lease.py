import json
import pickle
import socket
import subprocess
import sys
import threading
import time

import pytest

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.lease import LeaseTicket, StoreLease
from gigacanvas.storage.location import Location


def _write_holder(location: Location, number: int, **fields) -> None:
    record = {"token": "t", "host": "elsewhere", "pid": 1, "started": 0.0, "heartbeat": time.time(), **fields}
    location.put(f"lease-{number:06d}.json", json.dumps(record).encode())


def test_second_render_is_refused_while_the_first_holds_the_store(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    first = StoreLease(location)
    first.acquire()
    try:
        with pytest.raises(UsageError, match=r"is in use by another render \(pid \d+ on .*, last heartbeat 0 s ago\)"):
            StoreLease(location).acquire()
    finally:
        first.release()
    second = StoreLease(location)
    second.acquire()  # free again once given back
    second.release()
    assert location.names("lease-") == []


def race_for(location: Location, count: int) -> list:
    """`count` renders asking for the store at once; each one's lease, or None where refused."""
    results = []
    barrier = threading.Barrier(count)

    def take():
        lease = StoreLease(location)
        barrier.wait()
        try:
            lease.acquire()
            results.append(lease)
        except UsageError:
            results.append(None)

    threads = [threading.Thread(target=take) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_many_racing_renders_exactly_one_takes_the_store(tmp_path):
    winners = [r for r in race_for(Location(str(tmp_path / "s.zarr")), 8) if r is not None]
    assert len(winners) == 1
    winners[0].release()


def test_a_silent_holder_is_taken_over_after_the_timeout_and_then_stops(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    _write_holder(location, 3, heartbeat=time.time() - 0.1)
    with pytest.raises(UsageError, match="in use by another render"):
        StoreLease(location, timeout_s=30).acquire()
    _write_holder(location, 3, heartbeat=time.time() - 31)
    taker = StoreLease(location, timeout_s=30)
    taker.acquire()
    assert taker.number == 4 and location.names("lease-") == ["lease-000004.json"]
    taker.release()


def test_a_holder_that_lost_the_store_stops_before_its_next_write(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    slow = StoreLease(location, timeout_s=30)
    slow.acquire()
    slow.check()
    _write_holder(location, slow.number + 1)  # another render took over while this one stalled
    with pytest.raises(RenderError, match="was taken over by another render"):
        slow.check()
    successor = f"lease-{slow.number + 1:06d}.json"
    slow.release()
    assert successor in location.names("lease-")  # the successor's key is never removed


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_holder(location, 1, host=socket.gethostname(), pid=int(gone.stdout), heartbeat=time.time())
    lease = StoreLease(location, timeout_s=3600)
    lease.acquire()
    assert lease.number == 2
    lease.release()


def test_the_heartbeat_keeps_the_lease_fresh(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    lease = StoreLease(location, timeout_s=0.4)
    lease.acquire()
    try:
        first = json.loads(location.read("lease-000001.json"))["heartbeat"]
        deadline = time.monotonic() + 30  # a beat is due every 0.1 s; a loaded machine may delay it
        while json.loads(location.read("lease-000001.json"))["heartbeat"] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads(location.read("lease-000001.json"))["heartbeat"] > first
        lease.check()
    finally:
        lease.release()


def test_a_ticket_holds_while_its_lease_is_the_stores_and_survives_pickling(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    with pytest.raises(RuntimeError, match="before acquire"):
        StoreLease(location).ticket()
    lease = StoreLease(location, timeout_s=0.4)
    lease.acquire()
    try:
        ticket = lease.ticket()
        travelled = pickle.loads(pickle.dumps(ticket))
        assert travelled == ticket and isinstance(travelled, LeaseTicket) and travelled.number == lease.number
        time.sleep(0.25)  # a heartbeat rewrites the key in between: still the same holder
        travelled.check(location)
        with pytest.raises(RenderError, match="was taken over by another render"):
            LeaseTicket(ticket.number, "another token").check(location)
    finally:
        lease.release()


def test_a_ticket_stops_its_writer_once_a_higher_lease_exists(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    lease = StoreLease(location, timeout_s=30)
    lease.acquire()
    ticket = lease.ticket()
    _write_holder(location, lease.number + 1)  # a taker created its key and has not yet removed ours
    assert f"lease-{ticket.number:06d}.json" in location.names("lease-")
    taken = r"^store .* was taken over by another render \(lease 1 .*\); this reducer stops without writing$"
    with pytest.raises(RenderError, match=taken):
        ticket.check(location)
    lease.release()


def test_a_ticket_stops_its_writer_once_the_lease_is_released(tmp_path):
    location = Location(str(tmp_path / "s.zarr"))
    lease = StoreLease(location)
    lease.acquire()
    ticket = lease.ticket()
    lease.release()
    released = r"was released by its render \(lease 1 is gone.*\); this reducer stops without writing$"
    with pytest.raises(RenderError, match=released):
        ticket.check(location)
