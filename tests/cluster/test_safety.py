"""Do no harm: refused commands leave nothing behind, stores are never someone else's, one render per store."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.errors import RenderError
from gigacanvas.storage.lease import StoreLease
from gigacanvas.storage.location import Location
from tests.helpers import fail_after_step, run_cli, snapshot

SMALL = ["--prompt", "x", "--width", "256", "--height", "256", "--steps", "1", "--no-progress"]


def test_store_pointed_at_a_folder_of_user_files_deletes_nothing(tiny_model, ray_cluster, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("x")
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.png"),
                            "--store", str(data), *extra)
        assert code == 2 and "holds files that are not a gigacanvas store (a.txt, sub)" in err
        assert snapshot(tmp_path) == before


def test_the_model_folder_as_store_is_refused_and_kept(tiny_model, ray_cluster, tmp_path, capsys):
    from pathlib import Path

    before = snapshot(Path(tiny_model))
    code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.png"),
                        "--store", tiny_model, "--overwrite")
    assert code == 2 and "is the model folder" in err
    assert snapshot(Path(tiny_model)) == before


def test_store_and_out_at_one_path_is_refused(tiny_model, tmp_path, capsys):
    out = str(tmp_path / "o.png")
    code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", out, "--store", out)
    assert code == 2 and "overlap" in err
    assert list(tmp_path.iterdir()) == []


def test_a_held_store_refuses_a_second_render(tiny_model, ray_cluster, tmp_path, capsys):
    url = str(tmp_path / "o.zarr")
    other = StoreLease(Location(url))
    other.acquire()  # another render, alive and heartbeating
    try:
        code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.png"))
        assert code == 2 and "is in use by another render" in err
        assert not (tmp_path / "o.png").exists()
    finally:
        other.release()


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_model, tmp_path, capsys):
    code, out, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.png"), "--dry-run")
    assert code == 0, err
    assert "tiles: 1 per step of 256 px" in out and "memory: driver about" in out and "(create)" in out
    assert str(tmp_path / "o.zarr") in out and str(tmp_path / "o.png") in out
    assert list(tmp_path.iterdir()) == []


def test_a_canvas_beyond_the_machine_is_refused_with_the_number(tiny_model, tmp_path, capsys):
    code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.tif"),
                        "--width", "131072", "--height", "131072")
    assert code == 2 and "needs about" in err and "GiB on the driver" in err
    assert list(tmp_path.iterdir()) == []


def test_overwrite_resumes_a_matching_interrupted_render_and_only_a_lasting_store_is_promised(
    tiny_model, ray_cluster, tmp_path, monkeypatch
):
    """An interrupted render's store is noted for the resume line unless it is memory://, gone with the process."""
    from gigacanvas.cluster import signals

    noted = []
    monkeypatch.setattr(signals, "note_store", noted.append)
    memory = RenderSpec(prompt="x", width=128, height=128, steps=1, model=tiny_model, actors=1,
                        store="memory://gc-safety/m.zarr", out=str(tmp_path / "m.png"))
    render(memory, progress=False)
    assert noted == []

    spec = RenderSpec(prompt="x", width=256, height=256, steps=2, model=tiny_model, actors=1, tile_size=128,
                      tile_overlap=32, out=str(tmp_path / "r.png"), overwrite=True)
    fail_after_step(monkeypatch, 1, "simulated")
    with pytest.raises(RenderError):
        render(spec, progress=False)
    assert noted == [str(tmp_path / "r.zarr")]
    monkeypatch.undo()
    notes = []
    result = render(spec, progress=False, notify=notes.append)
    assert result.steps_run == 1 and any("at step 1 of 2" in n for n in notes)
    with Image.open(result.out) as im:
        assert np.asarray(im).std() > 0


# -- no refused command leaves anything behind ----------------------------------------------------

REFUSALS = [
    ["--width", "1000"],
    ["--steps", "10000000000"],
    ["--guidance", "nan"],
    ["--tile-size", "2048"],
    ["--actors", "100"],
    ["--cpus-per-actor", "inf"],
    ["--store", "nope://x/y.zarr"],
    ["--store", "{tmp}/user"],
    ["--store", "{tmp}/o.png"],
    ["--out", "{tmp}/missing/o.png"],
    ["--out", "{tmp}/user"],
    ["--width", "131072", "--height", "131072"],
]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.sampled_from(range(len(REFUSALS))), min_size=1, max_size=3, unique=True))
def test_no_refused_command_leaves_anything_behind(picks, tiny_model, ray_cluster, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("refused")
    (tmp / "user").mkdir()
    (tmp / "user" / "keep.txt").write_text("x")
    before = snapshot(tmp)
    argv = ["render", *SMALL, "--model", tiny_model, "--out", str(tmp / "o.png")]
    for pick in picks:
        argv += [arg.format(tmp=tmp) for arg in REFUSALS[pick]]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert all(line.startswith("gigacanvas: ") for line in lines), err
    assert [line for line in lines if line.startswith("gigacanvas: error: ")] == lines[-1:], err
    assert "Traceback" not in err + stdout
    assert snapshot(tmp) == before


def test_a_local_url_inside_the_model_folder_is_refused(tiny_model, tmp_path, capsys):
    for url in (f"local://{tiny_model}/transformer/s", f"file://{tiny_model}/../tiny-sd3/vae/s"):
        code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(tmp_path / "o.png"),
                            "--store", url, "--dry-run")
        assert code == 2 and "inside the model folder" in err


def test_a_picture_of_another_precision_or_model_is_not_replaced(tiny_model, tmp_path, capsys):
    from gigacanvas.storage import write_png

    out = tmp_path / "pic.png"
    # guidance as planning fills it (the model's default): a picture records the resolved spec
    base = RenderSpec(prompt="x", width=256, height=256, steps=1, guidance=7.0, model=tiny_model, tile_size=256,
                      tile_overlap=32, vae_tile_size=256, out=str(out))
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import picture_spec

    info = open_model(tiny_model)
    for theirs, why in ((base.replace(precision="bf16"), "precision"), (base, "model bytes")):
        spec = picture_spec(theirs, info)
        if why == "model bytes":
            spec["model_fingerprint"] = "0" * 16  # same path, other weights
        write_png(out, np.zeros((4, 4, 3), np.uint8), spec, "")
        code, _, err = run_cli(capsys, "render", *SMALL, "--model", tiny_model, "--out", str(out), "--tile-overlap", "32",
                            "--dry-run")
        assert code == 2 and "holds the picture of another render" in err, why
    write_png(out, np.zeros((4, 4, 3), np.uint8), picture_spec(base.replace(steps=2), info), "")
    code, _, err = run_cli(capsys, "render", "--spec", str(out), "--out", str(out), "--dry-run")
    assert code == 0, err  # the picture's own spec: its fingerprint is not read back as a spec key
