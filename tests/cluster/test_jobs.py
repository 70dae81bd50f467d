"""`ray job submit -- gigacanvas render ...` on a head with the job server, from a checkout.

One head for the module (dashboard and job server on free loopback ports, its own temp folder,
ended by its PID). Jobs are submitted the way README's "Run on a cluster" says for a checkout: the
checkout as working_dir (Ray ships it and puts it first on PYTHONPATH for the entrypoint and every
actor) and the venv's bin on PATH through env_vars. The head itself runs without either, as after
`.venv/bin/ray start`: so the entrypoint finds `gigacanvas` only through that runtime env, and runs
this checkout's code, not an installed one. The client runs in a subprocess because Ray reads
RAY_AUTH_MODE once per process, and this one may have used Ray without it already.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import LOOPBACK_RAY, free_port, ray_head, run_cli

CHECKOUT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEADLINE_S = 150  # for all jobs together; they take 20 to 40 s on a 2-core machine

# Submits every job at once, waits for all of them (up to a deadline), prints their ends as JSON.
CLIENT = """
import json, sys, time
from ray.job_submission import JobStatus, JobSubmissionClient

address, runtime_env, jobs, deadline = json.loads(sys.argv[1])
client = JobSubmissionClient(address)
ids = {name: client.submit_job(entrypoint=line, runtime_env=runtime_env) for name, line in jobs.items()}
end, done = time.monotonic() + deadline, {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
while time.monotonic() < end and any(client.get_job_status(job) not in done for job in ids.values()):
    time.sleep(0.5)
ends = {name: {"status": client.get_job_status(job).value, "logs": client.get_job_logs(job)} for name, job in ids.items()}
print(json.dumps(ends))
"""


def _render(tiny_model: str, *flags: str) -> list[str]:
    return ["render", "--prompt", "a harbour at night", "--width", "256", "--height", "256", "--steps", "1",
            "--seed", "4", "--model", tiny_model, "--no-progress", *flags]


@pytest.fixture(scope="module")
def jobs(tiny_model, tmp_path_factory):
    """Three jobs on a fresh head, run together: {name: {"status", "logs"}}, and the folder of their outputs."""
    folder = tmp_path_factory.mktemp("jobs")
    gcs, client, dashboard = free_port(), free_port(), free_port()
    # --address: Ray gives a job's entrypoint RAY_ADDRESS on the machine's network address; stay on loopback
    good = _render(tiny_model, "--actors", "1", "--address", f"127.0.0.1:{gcs}",
                   "--store", str(folder / "job.zarr"), "--out", str(folder / "job.png"))
    entrypoints = {
        "good": good,
        "bad width": _render(tiny_model, "--width", "1000", "--out", str(folder / "bad.png")),
        "relative out": _render(tiny_model, "--out", "poster.png"),
    }
    entrypoints = {name: shlex.join(["gigacanvas", *argv]) for name, argv in entrypoints.items()}
    runtime_env = {"working_dir": str(CHECKOUT), "env_vars": {"PATH": f"{VENV_BIN}:${{PATH}}"}}
    # The head as a plain `ray start` has it: no RAY_* settings, no PYTHONPATH, no venv on PATH.
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    head_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"} | {"PATH": path}
    head_env |= LOOPBACK_RAY  # a test's own setting, not the user's: the head listens on loopback only
    with ray_head(2, gcs, client, dashboard_port=dashboard, env=head_env):
        request = json.dumps([f"http://127.0.0.1:{dashboard}", runtime_env, entrypoints, DEADLINE_S])
        run = subprocess.run(
            [sys.executable, "-c", CLIENT, request], check=False, capture_output=True, text=True, timeout=DEADLINE_S + 60,
            env=os.environ | {"RAY_AUTH_MODE": "token"}, cwd=folder,
        )
        assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), folder


def _last_line(logs: str) -> str:
    return logs.strip().splitlines()[-1]


def test_a_render_job_writes_the_picture_at_its_absolute_out(jobs, tiny_model, capsys):
    ends, folder = jobs
    good = ends["good"]
    assert good["status"] == "SUCCEEDED", good["logs"][-3000:]
    assert _last_line(good["logs"]).endswith(f"-> {folder / 'job.png'}"), good["logs"][-3000:]
    # The same spec on the same (finished) store writes its picture again, without Ray.
    code, _, err = run_cli(capsys, *_render(tiny_model, "--store", str(folder / "job.zarr"), "--out", str(folder / "again.png")))
    assert code == 0, err
    with Image.open(folder / "job.png") as job, Image.open(folder / "again.png") as again:
        assert job.size == (256, 256)
        np.testing.assert_array_equal(np.asarray(job.convert("RGB")), np.asarray(again.convert("RGB")))


def test_a_refused_render_job_fails_with_one_line_and_no_traceback(jobs):
    ends, folder = jobs
    bad = ends["bad width"]
    assert bad["status"] == "FAILED", bad["logs"][-3000:]
    assert _last_line(bad["logs"]) == "gigacanvas: error: width 1000 is not a positive multiple of 16; try 1008"
    assert "Traceback" not in bad["logs"]
    assert not (folder / "bad.png").exists()


def test_a_render_job_with_a_relative_out_is_refused(jobs):
    """It would land in Ray's unpacked copy of the working_dir while the job reported success."""
    ends, _ = jobs
    refused = ends["relative out"]
    assert refused["status"] == "FAILED", refused["logs"][-3000:]
    line = _last_line(refused["logs"])
    assert line.startswith("gigacanvas: error: out 'poster.png' is a relative path, which in a Ray job means Ray's folder "), line
    assert "working_dir_files" in line and line.endswith("pass an absolute --out path or a URL (s3://bucket/...)"), line
    assert "Traceback" not in refused["logs"]
