"""`gigacanvas status --store URL`: where a render stands, from its store alone (no Ray, no lease)."""

import numpy as np
import pytest

from gigacanvas.storage import LatentStore
from gigacanvas.storage.lease import StoreLease
from tests.helpers import run_cli

SPEC = {"prompt": "a lighthouse", "width": 256, "height": 128, "steps": 4, "seed": 7}


def _store(tmp_path, steps_done: int, bands: int = 2) -> LatentStore:
    store = LatentStore(str(tmp_path / "s.zarr"))
    store.create(SPEC, "fp", channels=4, height=16, width=32, scale=8, bands=bands, precision="fp32",
                 local={"model": "/models/sd35", "out": "/pictures/p.png"})
    latent = np.zeros((4, 16, 32), np.float32)
    store.write_noise(latent)
    for step in range(1, steps_done + 1):
        store.commit_latent(latent, step)
    return store


def test_a_stopped_render_shows_its_step_pace_output_and_the_resume_command(tmp_path, capsys):
    store = _store(tmp_path, 2)
    store.commit_band(0, np.zeros((4, 8, 32), np.float32), 3)  # one band a step ahead
    code, out, err = run_cli(capsys, "status", "--store", store.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"store: {store.url}"
    assert lines[1] == "render: 256x128 px, 4 steps, seed 7, prompt 'a lighthouse'"
    assert lines[2] == "model: /models/sd35, fp32"
    assert lines[3].startswith("progress: step 2 of 4 (bands at steps 2-3), ") and "s/step" in lines[3]
    assert "left" not in lines[3]  # nobody runs it: no time left to promise
    assert lines[4] == f"running: no; resume with: gigacanvas resume --store {store.url}"
    assert lines[5] == "output: /pictures/p.png"


def test_a_running_render_shows_its_holder_and_the_time_left(tmp_path, capsys):
    store = _store(tmp_path, 1)
    lease = StoreLease(store.location)
    lease.acquire()
    try:
        code, out, _ = run_cli(capsys, "status", "--store", store.url)
    finally:
        lease.release()
    assert code == 0
    assert "left" in out.splitlines()[3]
    assert out.splitlines()[4].startswith("running: yes, pid ")


def test_a_finished_store_says_so(tmp_path, capsys):
    store = _store(tmp_path, 4)
    store.write_image(np.zeros((128, 256, 3), np.uint8))
    code, out, _ = run_cli(capsys, "status", "--store", store.url)
    assert code == 0
    assert "progress: finished, all 4 steps and the picture decoded" in out
    assert "running: no\n" in out


@pytest.mark.parametrize("kind", ["missing", "file", "folder"])
def test_what_is_not_a_store_is_one_line_exit_2(tmp_path, capsys, kind):
    target = tmp_path / "x"
    if kind == "file":
        target.write_text("hi")
    elif kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "status", "--store", str(target))
    assert code == 2 and out == ""
    assert err.startswith("gigacanvas: error: store ") and err.count("\n") == 1
    assert "resume with" not in err


@pytest.mark.parametrize(
    "record",
    [b'{"step": 5, "slot": ', b"", b"[1, 2, 3]", b"{}", b'{"step": -1, "slot": "a", "prev": null}',
     b'{"step": "2", "slot": "a", "prev": {"step": 1, "slot": "b"}}', b'{"step": true, "slot": "a", "prev": null}',
     b'{"step": 2, "slot": "c", "prev": {"step": 1, "slot": "b"}}', b'{"step": 2, "slot": "a", "prev": "x"}',
     b'{"step": 2, "slot": "a", "prev": {"step": 0, "slot": "b"}}', b"[" * 100_000, b"9" * 5001],
)
def test_a_damaged_band_record_is_one_line_exit_2(tmp_path, capsys, record):
    store = _store(tmp_path, 2)
    (tmp_path / "s.zarr" / "band-000.json").write_bytes(record)
    code, out, err = run_cli(capsys, "status", "--store", store.url)
    assert code == 2 and out == ""
    assert "band-000.json is not a valid commit record" in err and err.count("\n") == 1


def test_a_step_beyond_the_render_or_damaged_bands_are_refused(tmp_path, capsys):
    store = _store(tmp_path, 2)
    (tmp_path / "s.zarr" / "band-000.json").write_bytes(b'{"step": 999, "slot": "a", "prev": {"step": 998, "slot": "b"}}')
    (tmp_path / "s.zarr" / "band-001.json").write_bytes(b'{"step": 999, "slot": "a", "prev": {"step": 998, "slot": "b"}}')
    code, _, err = run_cli(capsys, "status", "--store", store.url)
    assert code == 2 and "records step 999 of a 4-step render" in err
    store.set_attrs(bands=[[0, 100]])
    code, _, err = run_cli(capsys, "status", "--store", store.url)
    assert code == 2 and "has damaged row bands" in err and err.count("\n") == 1


def test_a_relative_output_is_shown_from_the_folder_the_render_ran_in(tmp_path, capsys):
    store = LatentStore(str(tmp_path / "s.zarr"))
    store.create(SPEC, "fp", channels=4, height=16, width=32, scale=8, bands=1, precision="fp32",
                 local={"out": "p.png", "cwd": "/renders/today"})
    store.write_noise(np.zeros((4, 16, 32), np.float32))
    code, out, _ = run_cli(capsys, "status", "--store", store.url)
    assert code == 0 and out.splitlines()[-1] == "output: /renders/today/p.png"
