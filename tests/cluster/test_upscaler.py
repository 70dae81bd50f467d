"""`--upscaler` at planning (cluster/upscaler.py, plan.py, spec.py, compose.py's stage names): no Ray.

The end-to-end upscale with a model, across actor counts, is in test_upscale.py.
"""

import pytest

from gigacanvas import RenderSpec
from gigacanvas.cluster.plan import plan
from gigacanvas.errors import UsageError
from tests.actors.upscalerfiles import compact
from tests.helpers import run_cli

CANVAS = {"prompt": "a lighthouse", "width": 512, "height": 256, "steps": 3, "seed": 7, "tile_size": 256, "strength": 0.6}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    return compact(tmp_path_factory.mktemp("upscalers") / "2x-tiny.safetensors")


def test_the_spec_records_the_fingerprint_only_where_an_upscaler_is_used(model_file, tiny_model, tmp_path):
    """Content and picture carry `upscaler_fingerprint`, never the path; a spec without one is
    byte for byte what it was before the field existed (no key at all)."""
    plain = RenderSpec(model=tiny_model, out=str(tmp_path / "a.png"), **CANVAS)
    assert "upscaler_fingerprint" not in plain.content() and "upscaler_fingerprint" not in plain.portable()
    assert "upscaler" not in plain.resume_record()
    made = plan(plain.replace(upscaler=model_file))
    fingerprint = made.spec.upscaler_fingerprint
    assert len(fingerprint) == 16 and made.spec.content()["upscaler_fingerprint"] == fingerprint
    assert made.spec.portable()["upscaler_fingerprint"] == fingerprint and "upscaler" not in made.spec.portable()
    assert made.spec.resume_record()["upscaler"] == model_file
    assert f"  upscaler: RealESRGAN Compact 2x (2x-tiny.safetensors, 0.0 M params, fingerprint {fingerprint})" in made.describe()


def test_a_refinement_stage_is_named_by_its_upscaler_and_the_composition_is_shared(model_file, tiny_model, tmp_path):
    """Two stages: the composition upscales nothing (one store for any upscaler, as for any
    strength), the refinement stage after it is another with another upscaler."""
    spec = RenderSpec(model=tiny_model, out=str(tmp_path / "a.png"), compose="2", **{**CANVAS, "width": 1024, "height": 512})
    with_model, without = plan(spec.replace(upscaler=model_file)), plan(spec)
    assert with_model.stages[0].name == without.stages[0].name
    assert with_model.stages[0].spec.upscaler is None and "upscaler_fingerprint" not in with_model.stages[0].content
    assert with_model.stages[1].name != without.stages[1].name
    assert with_model.stages[1].content["upscaler_fingerprint"] == with_model.spec.upscaler_fingerprint


def test_a_spec_made_with_an_upscaler_needs_the_same_file(model_file, tiny_model, tmp_path):
    made = plan(RenderSpec(model=tiny_model, out=str(tmp_path / "a.png"), upscaler=model_file, **CANVAS)).spec
    again = RenderSpec(**{**made.portable(), "out": str(tmp_path / "b.png")})  # its picture as --spec
    with pytest.raises(UsageError, match="made with the upscale model of fingerprint .* and is given no --upscaler"):
        plan(again)
    other = compact(tmp_path / "other.safetensors", upscale=4)
    with pytest.raises(UsageError, match=f"{other} is another model .*fingerprint {made.upscaler_fingerprint} .*no first latent yet"):
        plan(again.replace(upscaler=other))  # a store that would upscale again (new here)
    assert plan(again.replace(upscaler=model_file)).spec.content() == made.content()


def test_a_recorded_upscaler_whose_file_is_gone_is_refused_only_where_it_would_upscale(model_file, tiny_model, tmp_path, monkeypatch):
    """Planned where the store is past its first latent (tests/cluster/test_upscale.py resumes one),
    refused at planning where it has none, and by `render` after its claim (the store may have
    changed since the plan), leaving nothing."""
    from gigacanvas import render
    from gigacanvas.cluster import plan as plan_module
    from gigacanvas.cluster.upscaler import UnusableUpscaler

    made = plan(RenderSpec(model=tiny_model, out=str(tmp_path / "a.png"), upscaler=model_file, **CANVAS)).spec
    gone = str(tmp_path / "gone.safetensors")
    again = RenderSpec(**{**made.portable(), "out": str(tmp_path / "b.png"), "upscaler": gone})
    refusal = (
        f"upscaler {gone} does not exist, and this render upscales with the model of fingerprint {made.upscaler_fingerprint} "
        f"\\(store {again.store_url} has no first latent yet\\): put that file back at {gone}, or pass --upscaler with it$"
    )
    with pytest.raises(UsageError, match=refusal):
        plan(again)
    monkeypatch.setattr(plan_module, "preview_store", lambda *args: "resume at step 1")  # as for a store past its start
    planned = plan(again)
    assert isinstance(planned.upscaler, UnusableUpscaler) and planned.spec.content() == made.content()
    assert (
        f"  upscaler: {gone} (fingerprint {made.upscaler_fingerprint}): upscaler {gone} does not exist; "
        "not needed: the store is past its first latent"
    ) in planned.describe()
    with pytest.raises(UsageError, match=refusal):
        render(again, progress=False)  # its claim finds no store: refused before Ray
    assert not (tmp_path / "b.png").exists() and not (tmp_path / "b.zarr").exists()


def test_an_upscaler_on_a_canvas_auto_renders_from_noise_is_a_note_and_recorded_nowhere(model_file, tiny_model, tmp_path):
    made = plan(RenderSpec(model=tiny_model, out=str(tmp_path / "a.png"), upscaler=model_file, **{**CANVAS, "width": 256}))
    assert made.spec.compose == "none" and made.spec.upscaler is None and made.upscaler is None
    assert "upscaler_fingerprint" not in made.spec.content()
    assert any("--upscaler" in note and "has no effect" in note for note in made.notes)


@pytest.mark.parametrize(
    "command, flags, message",
    [
        ("render", ["--compose", "none"], "has no effect with compose none (nothing is upscaled); drop --upscaler"),
        ("render", ["--upscaler", "m.pth"], "is a pickle file (.pth), refused because loading it can run code; convert it"),
        ("upscale", ["--upscaler", "nowhere.safetensors"], "does not exist"),
        ("upscale", ["--upscaler", "unknown"], "is no architecture spandrel 0.4.2 recognises"),
    ],
)
def test_bad_upscaler_input_is_one_line_and_exit_2(command, flags, message, model_file, tiny_model, tmp_path, capsys):
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    (tmp_path / "m.pth").write_bytes(b"never opened")
    save_file({"some.weight": torch.zeros(2)}, str(tmp_path / "unknown"))
    Image.new("RGB", (64, 48)).save(tmp_path / "in.png")
    given = {"--upscaler": model_file}
    if "--upscaler" in flags:
        given = {"--upscaler": str(tmp_path / flags[1])}
        flags = []
    head = ["upscale", str(tmp_path / "in.png"), "--scale", "4", "--tile-size", "128"] if command == "upscale" else [
        "render", "--width", "512", "--height", "256",
    ]
    code, _, err = run_cli(
        capsys, *head, "--prompt", "x", "--model", tiny_model, "--out", str(tmp_path / "x.png"), "--dry-run",
        *[v for kv in given.items() for v in kv], *flags,
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("gigacanvas: error: ") and message in err, err
    assert not (tmp_path / "x.zarr").exists()


def test_a_spec_file_names_the_upscaler_and_a_flag_overrides_it(model_file, tmp_path):
    from gigacanvas.cluster.spec import build_spec

    (tmp_path / "spec.yaml").write_text(f"prompt: a fox\nupscaler: {model_file}\n")
    assert build_spec(str(tmp_path / "spec.yaml")).upscaler == model_file
    assert build_spec(str(tmp_path / "spec.yaml"), upscaler="other.safetensors").upscaler == "other.safetensors"
