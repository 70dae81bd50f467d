"""`gigacanvas resume --store URL`: a stopped render finished from its store alone, and every refusal."""

import shlex
import signal
from pathlib import Path

import numpy as np
import pytest
import zarr  # to write a store of an older layout
from PIL import Image

from gigacanvas.cluster.plan import plan
from gigacanvas.cluster.spec import RenderSpec
from gigacanvas.storage import LatentStore
from gigacanvas.storage.lease import StoreLease
from tests.helpers import fail_after_step, run_cli, snapshot

SMALL = dict(prompt="a fox in snow", width=256, height=256, steps=2, seed=4, tile_size=128, tile_overlap=32, actors=1)
SMALL_FLAGS = [arg for name, value in SMALL.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


def _picture(path) -> tuple[np.ndarray, str]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), im.text["gigacanvas"]


def _assert_one_error_line(code: int, stdout: str, err: str, message: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gigacanvas: error: "), err
    assert message in lines[0], err
    assert "Traceback" not in err + stdout


@pytest.fixture(scope="module")
def finished(tiny_model, ray_cluster, tmp_path_factory) -> Path:
    """SMALL rendered through the console, undisturbed: its picture, beside its finished store."""
    from gigacanvas.cluster.cli import main

    out = tmp_path_factory.mktemp("finished") / "p.png"
    assert main(["render", *SMALL_FLAGS, "--model", tiny_model, "--out", str(out), "--no-progress"]) == 0
    return out


def test_an_interrupted_render_resumes_from_its_store_alone(tiny_model, finished, tmp_path, monkeypatch, capsys):
    baseline = finished
    ran, elsewhere = tmp_path / "ran here", tmp_path / "elsewhere"  # a space: the command must be quoted
    ran.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(ran)
    fail_after_step(monkeypatch, 1, "simulated node loss")
    code, _, err = run_cli(capsys, "render", *SMALL_FLAGS, "--model", tiny_model, "--out", "poster.png", "--no-progress")
    store = ran / "poster.zarr"
    assert code == 1
    command = f"gigacanvas resume --store {shlex.quote(str(store))}"
    assert err.strip().splitlines()[-1] == f"gigacanvas: error: simulated node loss; resume with: {command}"
    assert LatentStore(str(store)).read_latent()[1] == 1 and not (ran / "poster.png").exists()
    record = LatentStore(str(store)).attrs()["local"]
    assert record["out"] == "poster.png" and record["cwd"] == str(ran) and record["model"] == tiny_model

    monkeypatch.undo()
    monkeypatch.chdir(elsewhere)  # the relative out is the folder the render ran in's, not this one's
    code, stdout, err = run_cli(capsys, *shlex.split(command)[1:], "--no-progress")
    assert code == 0, err
    assert "resuming" in err and "at step 1 of 2" in err and str(ran / "poster.png") in stdout
    pixels, text = _picture(ran / "poster.png")
    want_pixels, want_text = _picture(baseline)
    np.testing.assert_array_equal(pixels, want_pixels)
    assert text == want_text  # the picture's spec too: nothing but the URL was needed
    assert list(elsewhere.iterdir()) == []

    # A finished store writes its picture again: where the record says, or where --out says.
    (ran / "poster.png").unlink()
    code, _, err = run_cli(capsys, "resume", "--store", str(store), "--no-progress")
    assert code == 0, err
    np.testing.assert_array_equal(_picture(ran / "poster.png")[0], want_pixels)
    code, _, err = run_cli(capsys, "resume", "--store", str(store), "--out", "copy.png", "--no-progress")
    assert code == 0, err
    np.testing.assert_array_equal(_picture(elsewhere / "copy.png")[0], want_pixels)


def test_the_interrupted_line_names_the_resume_command_quoted_and_absolute(tmp_path, monkeypatch):
    from gigacanvas.cluster import signals

    monkeypatch.chdir(tmp_path)
    for noted, url in (("my store.zarr", str(tmp_path / "my store.zarr")), ("s3://b/x y.zarr", "s3://b/x y.zarr")):
        with signals.guard():
            signals.note_store(noted)
        code, line = signals.ending(signals.Interrupted(signal.SIGTERM))
        assert code == 143 and line == f"gigacanvas: interrupted; resume with: gigacanvas resume --store '{url}'"
    with signals.guard():
        pass
    assert signals.ending(KeyboardInterrupt())[1] == "gigacanvas: interrupted before anything was written; nothing to resume"


# -- refusals: one line, exit 2, nothing written ---------------------------------------------------


def _made_here(tmp_path, tiny_model, record: bool = True) -> LatentStore:
    """A store as a render leaves it at step 0, made without Ray: its spec, fingerprint and record
    (`record=False`: as a store made before the record existed)."""
    the_plan = plan(RenderSpec(model=tiny_model, out=str(tmp_path / "p.png"), **SMALL))
    spec, info = the_plan.spec, the_plan.info
    store = LatentStore(spec.store_url)
    store.create(
        spec.content(), info.fingerprint, info.latent_channels, the_plan.lat_h, the_plan.lat_w, info.vae_scale_factor,
        precision="fp32", **({"local": spec.resume_record()} if record else {}),
    )
    store.write_noise(np.zeros((info.latent_channels, the_plan.lat_h, the_plan.lat_w), np.float32))
    return store


def _changed(tmp_path, tiny_model, **attrs) -> str:
    store = _made_here(tmp_path, tiny_model)
    store.set_attrs(**{k: v(store.attrs()) if callable(v) else v for k, v in attrs.items()})
    return store.url


def _beyond(tmp_path, tiny_model) -> str:
    store = _made_here(tmp_path, tiny_model)
    for band in range(len(store.bands)):
        (tmp_path / "p.zarr" / f"band-{band:03d}.json").write_bytes(b'{"step": 999, "slot": "a", "prev": {"step": 998, "slot": "b"}}')
    return store.url


def _file(tmp_path) -> str:
    (tmp_path / "s.zarr").write_text("mine")
    return str(tmp_path / "s.zarr")


def _folder_with(tmp_path, name) -> str:
    (tmp_path / "s.zarr").mkdir()
    (tmp_path / "s.zarr" / name).write_text("mine")
    return str(tmp_path / "s.zarr")


def _layout_2(tmp_path, tiny_model) -> str:
    zarr.create_group(str(tmp_path / "s.zarr"), zarr_format=3, attributes={"gigacanvas": {"layout": 2}, "spec": {}})
    return str(tmp_path / "s.zarr")


HELD: list[StoreLease] = []  # leases the "in use" case takes, released after it


def _in_use(tmp_path, tiny_model) -> str:
    store = _made_here(tmp_path, tiny_model)
    lease = StoreLease(store.location)
    lease.acquire()  # held by this live process, as by another render
    HELD.append(lease)
    return store.url


REFUSED_STORES = {
    "missing": (lambda t, m: str(t / "nope.zarr"), "does not exist; nothing to resume"),
    "empty folder": (lambda t, m: (t / "s.zarr").mkdir() or str(t / "s.zarr"), "is empty; nothing to resume"),
    "a file": (lambda t, m: _file(t), "is a file; it is not a gigacanvas store"),
    "someone's folder": (lambda t, m: _folder_with(t, "notes.txt"), "holds files that are not a gigacanvas store's (notes.txt)"),
    "a step beyond the render": (_beyond, "records step 999 of a 2-step render; it was edited or damaged"),
    "an older layout": (_layout_2, "older gigacanvas (store layout 2) and cannot be resumed"),
    "made before the record": (lambda t, m: _made_here(t, m, record=False).url, "made by an older gigacanvas and records no model or output; run the original"),
    "model gone": (lambda t, m: _changed(t, m, local=lambda a: {**a["local"], "model": str(t / "gone")}), "gone does not exist"),
    "model changed": (lambda t, m: _changed(t, m, fingerprint="0"), "is not the one store"),
    "record edited": (lambda t, m: _changed(t, m, local=lambda a: {**a["local"], "colour": 1}), "unknown key 'colour'"),
    "record overwrites": (lambda t, m: _changed(t, m, local=lambda a: {**a["local"], "overwrite": True}), "records 'overwrite'"),
    "in use": (_in_use, "is in use by another render"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_STORES))
def test_a_store_that_cannot_be_resumed_is_one_line_exit_2(case, tiny_model, tmp_path, capsys):
    make, message = REFUSED_STORES[case]
    url = make(tmp_path, tiny_model)
    try:
        before = {k: v for k, v in snapshot(tmp_path).items() if not k.name.startswith("lease-")}
        code, stdout, err = run_cli(capsys, "resume", "--store", url, "--no-progress")
        _assert_one_error_line(code, stdout, err, message)
        assert {k: v for k, v in snapshot(tmp_path).items() if not k.name.startswith("lease-")} == before
    finally:
        while HELD:
            HELD.pop().release()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--steps", "3"], "resume cannot change --steps: it decides the pixels of the render in store"),
        (["--seed", "1"], "resume cannot change --seed"),
        (["--width", "512"], "resume cannot change --width"),
        (["--tile-batch", "1"], "resume cannot change --tile-batch"),
        (["--vae-tile-size", "0"], "resume cannot change --vae-tile-size"),
        (["--prompt", "a wolf"], "resume cannot change --prompt"),
        (["--overwrite"], "resume does not take --overwrite"),
        (["--spec", "s.yaml"], "resume does not take --spec"),
        (["--actors", "0"], "actors 0 must be at least 1"),
        (["--out", "p.jpg"], "must end in .png"),
    ],
)
def test_a_flag_that_would_change_the_pixels_is_refused(flags, message, tiny_model, tmp_path, capsys):
    store = _made_here(tmp_path, tiny_model)
    before = snapshot(tmp_path)
    code, stdout, err = run_cli(capsys, "resume", "--store", store.url, *flags)
    _assert_one_error_line(code, stdout, err, message)
    assert snapshot(tmp_path) == before


def test_dry_run_plans_the_recorded_render_with_the_given_places(tiny_model, tmp_path, capsys):
    store = _made_here(tmp_path, tiny_model)
    before = snapshot(tmp_path)
    code, stdout, err = run_cli(capsys, "resume", "--store", store.url, "--dry-run")
    assert code == 0, err
    assert "256x256 px" in stdout and "2 steps, seed 4" in stdout and f"out: {tmp_path / 'p.png'}" in stdout
    assert f"store: {store.url} (resume at step 0)" in stdout
    code, stdout, err = run_cli(capsys, "resume", "--store", store.url, "--out", str(tmp_path / "q.png"), "--dry-run")
    assert code == 0 and f"out: {tmp_path / 'q.png'}" in stdout, err
    assert snapshot(tmp_path) == before


def test_resume_flags_are_the_overrides_resume_takes():
    from gigacanvas.cluster.cli import RESUME_FLAGS
    from gigacanvas.cluster.resume import RESUME_OVERRIDES
    from gigacanvas.cluster.spec import CONTENT_FIELDS, RESUME_FIELDS

    # --lora is repeatable (an `append` flag), so the parser adds it apart from RESUME_FLAGS
    assert [flag[2:].replace("-", "_") for flag, _, _ in RESUME_FLAGS] + ["lora"] == list(RESUME_OVERRIDES)
    assert set(RESUME_OVERRIDES) <= set(RESUME_FIELDS) and not set(RESUME_OVERRIDES) & set(CONTENT_FIELDS)


def test_an_upscaler_is_refused_for_a_store_rendered_without_one(finished, capsys):
    code, out, err = run_cli(capsys, "resume", "--store", str(finished.with_suffix(".zarr")), "--upscaler", "x4.safetensors")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "was rendered without an upscale model; resume --upscaler only says where its model is now" in err


def test_exporting_a_finished_store_elsewhere_keeps_the_output_it_records(finished, tmp_path, capsys):
    out = finished
    store = str(out.with_suffix(".zarr"))
    code, _, err = run_cli(capsys, "resume", "--store", store, "--out", str(tmp_path / "copy.png"), "--no-progress")
    assert code == 0 and (tmp_path / "copy.png").exists(), err
    assert LatentStore(store).attrs()["local"]["out"] == str(out)  # a one-off export, not the render's output
