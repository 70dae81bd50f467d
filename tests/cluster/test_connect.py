"""Which cluster `connect` joins, and how fast it gives up on an address where Ray does not answer.

A real head runs on free loopback ports (`ray start --block`, ended by its PID); the fakes are a
TCP server that accepts and says nothing and an HTTP server. Drivers run in subprocesses: a test
process may already hold the session's Ray, and `connect` reuses an initialised Ray.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from gigacanvas.cluster import placement
from gigacanvas.errors import UsageError
from tests.helpers import LOOPBACK_RAY, free_port, ray_head


@pytest.fixture(scope="module")
def head():
    """A one-CPU Ray head with token auth (Ray's default) and Ray Client: (GCS port, client port)."""
    gcs, client = free_port(), free_port()
    with ray_head(1, gcs, client):
        yield gcs, client


@pytest.fixture(scope="module")
def fakes():
    """(silent port, http port): a server that accepts and never speaks, and a plain HTTP server."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []

    def accept_forever() -> None:
        try:
            while True:
                held.append(silent.accept())
        except OSError:  # closed at teardown
            pass

    threading.Thread(target=accept_forever, daemon=True).start()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    yield silent.getsockname()[1], web.server_address[1]
    web.shutdown()
    silent.close()


def driver(code: str, auth: str | None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | LOOPBACK_RAY | env
    if auth:
        environ["RAY_AUTH_MODE"] = auth
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=environ)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_port_where_ray_does_not_answer_fails_within_the_deadline(fakes, scheme, monkeypatch):
    """The TCP probe passes (someone listens); `ray.init` would then retry for minutes, or 32 s with ray://."""
    monkeypatch.setattr(placement, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    for port in fakes:
        started = time.monotonic()
        with pytest.raises(UsageError, match=rf"^nothing at {scheme}127.0.0.1:{port} answers as a Ray cluster within 1 s; check --address"):
            placement.connect(f"{scheme}127.0.0.1:{port}")
        assert time.monotonic() - started < 5


PROBE = """
from gigacanvas.cluster import placement
from gigacanvas.errors import UsageError
for address in {addresses!r}:
    try:
        placement._check_answers(address)
        print("answers", address)
    except UsageError as exc:
        print("refused", exc)
"""


def test_a_real_head_answers_and_asks_for_its_token(head):
    gcs, client = head
    addresses = [f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}", f"ray://127.0.0.1:{gcs}", f"127.0.0.1:{client}"]
    with_token = driver(PROBE.format(addresses=addresses), "token").stdout.splitlines()
    assert with_token[:2] == [f"answers 127.0.0.1:{gcs}", f"answers ray://127.0.0.1:{client}"]
    assert with_token[2] == f"refused ray://127.0.0.1:{gcs} is a gRPC server but not Ray Client; for a GCS port, drop ray://"
    assert with_token[3].startswith(f"refused 127.0.0.1:{client} is a gRPC server but not a Ray GCS")
    without = driver(PROBE.format(addresses=addresses[:1]), None).stdout
    assert f"refused the Ray cluster at 127.0.0.1:{gcs} wants token authentication; set RAY_AUTH_MODE=token" in without


JOIN = """
from gigacanvas.cluster.placement import connect
print(connect({address!r}))
"""


def test_joins_a_real_head_with_token_auth(head):
    run = driver(JOIN.format(address=f"127.0.0.1:{head[0]}"), "token")
    assert run.stdout.startswith(f"joined the Ray cluster at 127.0.0.1:{head[0]} (1 node, 1 CPU)\n"), run.stderr[-2000:]


def test_no_address_starts_a_new_cluster_despite_a_stale_current_cluster_file(tmp_path):
    """A killed `ray start` leaves ray_current_cluster behind; plain `ray.init()` would retry it for minutes."""
    temp = tempfile.mkdtemp(prefix="gc-", dir="/tmp")  # short: Ray's socket paths live under it
    (Path(temp) / "ray").mkdir()
    (Path(temp) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    try:
        run = driver(JOIN.format(address=None), None, RAY_TMPDIR=temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert run.stdout.startswith("started a new local Ray cluster ("), run.stderr[-2000:]
    assert "Token authentication is enabled" not in run.stderr


def test_auto_with_a_stale_current_cluster_file_fails_at_once(tmp_path, monkeypatch):
    from ray._private import services

    dead = f"127.0.0.1:{free_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(dead)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # keeps Ray from switching this process to token auth
    monkeypatch.setattr(services, "find_gcs_addresses", list)  # other clusters on this machine
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    with pytest.raises(UsageError, match=rf"^--address auto chose {dead}, .*: no Ray cluster answers at {dead} \(Connection refused\)"):
        placement.connect("auto")
    (tmp_path / "ray" / "ray_current_cluster").unlink()
    with pytest.raises(UsageError, match="^--address auto found no running Ray cluster on this machine"):
        placement.connect("auto")
