"""Test helpers shared across test modules: a Ray head of our own, and calls that must not block.

A head runs on free loopback ports with `ray start --block` in its own session and ends by its
PID (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

RAY = str(Path(sys.executable).with_name("ray"))
# Read by Ray at import (ray_constants.ENABLE_RAY_CLUSTER): off, a node's address is 127.0.0.1 and
# its servers bind there, so no test reaches a non-loopback address (see tests/conftest.py).
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

# The spec most renders of the tiny model use: tiles of 256 px on a 512 x 320 canvas, 6 to 8 tiles
# per step (shifted windows) in batches of 2, and 2 x 2 decode tiles (enough to spread the exact
# decode's passes over the actors; each tile costs calls per up-block). conftest's
# `one_actor_render` renders it once for every test comparing with it. `compose` none: these tests
# are about the step loop, the decode and the store of one render; a composition (spec version 4's
# default on a canvas past the native 256 x 256) would add a pass to each, and has tests of its
# own (tests/cluster/test_compose.py).
MULTI_TILE = dict(
    prompt="a harbour at night",
    negative_prompt="blurry",
    width=512,
    height=320,
    steps=2,
    guidance=4.5,
    seed=5,
    tile_size=256,
    tile_overlap=64,
    tile_batch=2,
    vae_tile_size=256,
    compose="none",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(
    num_cpus: int, gcs_port: int, client_port: int, dashboard_port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[None]:
    """A Ray head with token auth (Ray's default) on the given loopback ports, for one block.

    With `dashboard_port`, the dashboard and its job server listen on 127.0.0.1 there (its agent on
    a free port too: Ray's default, 52365, would collide with another head on this machine).
    `env` is the head's environment, which Ray's workers and job entrypoints inherit (default ours).
    """
    temp = tempfile.mkdtemp(prefix="gc-", dir="/tmp")  # short: Ray's socket paths live under it
    log = Path(temp) / "head.log"
    argv = [RAY, "start", "--head", "--block", "--port", str(gcs_port), "--ray-client-server-port", str(client_port),
            "--node-ip-address", "127.0.0.1", "--temp-dir", temp, "--num-cpus", str(num_cpus), "--disable-usage-stats"]
    if dashboard_port is None:
        argv += ["--include-dashboard", "false"]
    else:
        argv += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
                 "--dashboard-agent-listen-port", str(free_port())]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        while True:  # the Ray Client server comes up after that line; on a busy machine, seconds after
            try:
                socket.create_connection(("127.0.0.1", client_port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
        yield
    finally:
        proc.terminate()  # `ray start --block` stops what it started on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


MOTO = str(Path(sys.executable).with_name("moto_server"))
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_bucket(name: str) -> Iterator[str]:
    """s3://NAME on a moto server at 127.0.0.1 for one block; os.environ points s3fs (and every
    process started meanwhile, Ray's included) there."""
    port = free_port()
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(name)
        yield f"s3://{name}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def error_reading_fifo(read: Callable[[Path], object], fifo: Path) -> BaseException:
    """The one exception `read(fifo)` raises on a FIFO without a writer; fails the test if it blocks."""
    errors: list[BaseException] = []

    def attempt():
        try:
            read(fifo)
        except Exception as exc:  # noqa: BLE001 - collected for the caller's assertion
            errors.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # a reader blocked in open(): give it a writer so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert len(errors) == 1, errors
    return errors[0]


def fail_after_step(monkeypatch, step: int, message: str = "simulated node loss") -> None:
    """Make the next renders raise RenderError(message) right after `step` is committed."""
    from gigacanvas.cluster import render as render_module
    from gigacanvas.errors import RenderError

    denoise = render_module.denoise

    def denoise_then_fail(*args, on_step, **kwargs):
        def on_step_then_fail(done):
            on_step(done)
            if done == step:
                raise RenderError(message)

        return denoise(*args, on_step=on_step_then_fail, **kwargs)

    monkeypatch.setattr(render_module, "denoise", denoise_then_fail)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """The console's `main` in this process: (exit code, stdout, stderr)."""
    from gigacanvas.cluster.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(root: Path) -> dict:
    """Every path below `root` with its bytes (None for folders): equal snapshots, nothing touched."""
    return {p.relative_to(root): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def finished_store(url: str, height: int, width: int, seed: int = 0, steps: int = 2, image=None):
    """A store holding a whole render of a random (height, width) picture (or `image`), made
    without Ray or a model: its latent committed at every step, its `image` written and marked
    decoded. Returns (store, image)."""
    import numpy as np

    from gigacanvas.storage import LatentStore

    assert height % 8 == 0 and width % 8 == 0, "a picture is 8 px per latent cell"
    rng = np.random.default_rng(seed)
    store = LatentStore(url)
    store.create({"seed": seed, "steps": steps}, "f" * 16, channels=16, height=height // 8, width=width // 8, scale=8, bands=2)
    latent = rng.standard_normal((16, height // 8, width // 8)).astype(np.float32)
    store.write_noise(latent)
    for step in range(1, steps + 1):
        store.commit_latent(latent / (step + 1), step)
    if image is None:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    store.write_image(image)
    return store, image
