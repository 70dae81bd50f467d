"""Planning (cluster/plan.py): refusals and notes that need the model's configs but no Ray, through
the CLI's --dry-run (milliseconds past the tiny model's build)."""

from gigacanvas.cluster.spec import RenderSpec
from tests.helpers import run_cli


def _dry_run(capsys, tiny_model, tmp_path, *flags):
    return run_cli(
        capsys, "render", "--prompt", "x", "--model", tiny_model, "--out", str(tmp_path / "x.png"), "--dry-run", *flags
    )


def test_a_store_under_a_file_is_refused_at_planning_in_one_line(capsys, tiny_model, tmp_path):
    (tmp_path / "afile").write_text("mine")
    store = tmp_path / "afile" / "deeper" / "x.zarr"
    code, stdout, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "256", "--height", "256", "--store", str(store))
    assert code == 2 and err.count("\n") == 1, err
    assert f"store {store} is under {tmp_path / 'afile'}, which is a file, not a folder" in err
    assert (tmp_path / "afile").read_text() == "mine"
    code, stdout, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "256", "--height", "256", "--store", str(tmp_path / "d" / "x.zarr"))
    assert code == 0 and "(create)" in stdout, err  # a folder yet to be made is fine


def test_strength_auto_does_not_use_is_a_note_and_an_explicit_none_a_refusal(capsys, tiny_model, tmp_path):
    """`compose auto` (the default) renders a canvas at the native area from noise: a --strength
    there has no effect, said in one note line rather than refused (a command reused across
    sizes should still render); `--compose none --strength` asked for both, and is refused."""
    from gigacanvas import render
    from gigacanvas.cluster.plan import plan

    code, stdout, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "256", "--height", "256", "--strength", "0.4")
    assert code == 0, err
    assert "compose: none" in stdout
    assert ("note: --strength 0.4 has no effect: compose auto renders from noise, as the canvas is no larger "
            "than the model's native area (256x256 px): nothing to refine") in stdout
    code, stdout, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "512", "--height", "256", "--strength", "0.4")
    assert code == 0 and "note" not in stdout and "strength 0.4" in stdout, stdout  # composed: it counts
    code, _, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "256", "--height", "256", "--compose", "none", "--strength", "0.4")
    assert code == 2 and "strength 0.4 has no effect with compose none" in err
    spec = RenderSpec(prompt="x", model=tiny_model, width=256, height=256, strength=0.4, out=str(tmp_path / "x.png"))
    assert plan(spec).notes and render  # render() prints the plan's notes before any work (render.py)


def test_a_strength_too_small_to_leave_a_step_is_refused(capsys, tiny_model, tmp_path):
    """steps * strength can round away (4 - 4e-300 is 4.0): a refinement from step 4 of 4 runs nothing."""
    code, _, err = _dry_run(capsys, tiny_model, tmp_path, "--width", "512", "--height", "512", "--steps", "4", "--strength", "1e-300")
    assert code == 2 and "leaves the refinement no step to run" in err and "--strength 0.25 or more" in err, err
    assert err.count("\n") == 1
