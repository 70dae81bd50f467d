import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas.cluster.spec import (
    CONTENT_FIELDS,
    FIELDS,
    RAY_JOB_ENV,
    SPEC_VERSION,
    RenderSpec,
    _quote,
    build_spec,
    check_job_outputs,
)
from gigacanvas.errors import UsageError
from gigacanvas.tiling.shift import StepGrids


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"width": 1000}, "width 1000 is not a positive multiple of 16; try 1008"),
        ({"width": 17}, "width 17 is not a positive multiple of 16; try 16"),  # the nearest, not the next
        ({"width": 8}, "width 8 is not a positive multiple of 16; try 16"),  # never 0
        ({"height": 1032}, "height 1032 is not a positive multiple of 16; try 1040"),  # a tie: upwards
        ({"height": 0}, "height 0 is not a positive multiple of 16"),
        ({"steps": 0}, "steps 0 must be at least 1"),
        ({"tile_size": 256, "tile_overlap": 256}, "tile_overlap 256 must be smaller than tile_size 256"),
        ({"tile_overlap": 12}, "multiple of 8"),
        ({"seed": -1}, "seed -1"),
        ({"guidance": -2.0}, "guidance"),
        ({"tile_batch": 0}, "tile_batch"),
        ({"actors": 0}, "actors 0"),
        ({"cpus_per_actor": 0.0}, "cpus_per_actor"),
        ({"out": "picture.jpg"}, "must end in .png"),
        ({"width": "wide"}, "width 'wide' is not a valid int"),
        ({"steps": 2.5}, "steps 2.5 is not a valid int"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_field(changes, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        RenderSpec(prompt="x", **changes)


def test_file_then_flags_and_key_spellings(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("prompt: a fox\nwidth: 512\ntile-size: 256\nseed: 3\n")
    spec = build_spec(str(spec_file), seed=9, steps=None)
    assert (spec.prompt, spec.width, spec.tile_size, spec.seed) == ("a fox", 512, 256, 9)
    json_file = tmp_path / "s.json"
    json_file.write_text(json.dumps({"prompt": "a fox", "steps": "4"}))
    assert build_spec(str(json_file)).steps == 4


def test_unknown_key_lists_the_valid_ones(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text("prompt: x\ncolour: red\n")
    with pytest.raises(UsageError, match="unknown key 'colour'; valid keys: actors, address"):
        build_spec(str(spec_file))


@pytest.mark.parametrize("content, message", [(None, "unreadable"), ("a: [", "not valid YAML"), ("- 1\n", "mapping")])
def test_unreadable_spec_files(tmp_path, content, message):
    path = tmp_path / "s.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message):
        build_spec(str(path))


def test_prompt_is_required():
    with pytest.raises(UsageError, match="prompt is missing"):
        build_spec(None, width=512)


def test_portable_spec_leaves_out_local_paths():
    spec = RenderSpec(prompt="x", out="/tmp/a.png", store="s3://b/a.zarr")
    assert "out" not in spec.portable() and "store" not in spec.portable()
    assert spec.store_url == "s3://b/a.zarr"
    assert RenderSpec(prompt="x", out="dir/a.png").store_url == "dir/a.zarr"


# First, do no harm (issue 8): every careless or hostile value ends in one short UsageError line.

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"guidance": NAN}, "guidance nan must be a finite number from 0 to 100"),
        ({"guidance": INF}, "guidance inf must be a finite number from 0 to 100"),
        ({"guidance": 1e39}, "guidance 1e+39 must be a finite number from 0 to 100"),
        ({"guidance": "nan"}, "guidance nan must be a finite number from 0 to 100"),
        ({"guidance": 100.5}, "guidance 100.5 must be a finite number from 0 to 100"),
        ({"guidance": True}, "guidance True is not a valid float"),
        ({"cpus_per_actor": 0.00001}, "cpus_per_actor 1e-05 must be a finite number from 0.01 to 1024"),
        ({"cpus_per_actor": INF}, "cpus_per_actor inf must be a finite number from 0.01 to 1024"),
        ({"cpus_per_actor": NAN}, "cpus_per_actor nan must be a finite number from 0.01 to 1024"),
        ({"cpus_per_actor": 2048.0}, "cpus_per_actor 2048.0 must be a finite number from 0.01 to 1024"),
        ({"cpus_per_actor": 1.5}, "cpus_per_actor 1.5 is above 1 and so must be a whole number (Ray's rule); try 1 or"),
        ({"cpus_per_actor": False}, "cpus_per_actor False is not a valid float"),
        ({"steps": 10_000_000_000}, "steps 10000000000 must be at most 10000"),
        ({"steps": 1e10}, "steps 10000000000 must be at most 10000"),
        ({"width": 262_160}, "width 262160 must be at most 262144"),
        ({"height": 10**400}, "height an integer of about 401 digits must be at most 262144"),
        ({"tile_batch": 65}, "tile_batch 65 must be at most 64"),
        ({"actors": 4097}, "actors 4097 must be at most 4096"),
        ({"tile_size": 16400}, "tile_size 16400 must be at most 16384"),
        ({"vae_tile_size": 16400}, "vae_tile_size 16400 must be at most 16384"),
        ({"tile_overlap": 8 * 10**30}, "tile_overlap 8000000000000000000000000000000 must be at most 16384"),
        ({"seed": 2**64}, "seed 18446744073709551616 must be between 0 and"),
        ({"prompt": "x" * 10_001}, "prompt is 10001 characters long; at most 10000 are accepted"),
        ({"negative_prompt": "x" * 10_001}, "negative_prompt is 10001 characters long; at most 10000 are accepted"),
        ({"model": "m" * 5000}, "model is 5000 characters long; at most 4096 are accepted"),
        ({"out": "a\0.png"}, "out 'a\\x00.png' contains a NUL character"),
        ({"prompt": ["a", "b"]}, "prompt must be a single value, not a list"),
        ({"width": {"a": 1}}, "width must be a single value, not a mapping"),
        ({"precision": "p" * 5000}, "precision 'ppppppppppppppppppppppppppppppppppppppp... is not one of"),
        ({"spec_version": 6}, "spec_version 6 is newer than this gigacanvas knows (up to 5); upgrade gigacanvas"),
            ({"compose": "many"}, "compose 'many' is not auto, none or a number of stages from 1 to 8"),
            ({"compose": 9}, "compose 9 is not auto, none or a number of stages from 1 to 8"),
            ({"strength": 0}, "strength 0.0 must be a number above 0 and at most 1"),
            ({"strength": 1.5}, "strength 1.5 must be a number above 0 and at most 1"),
            ({"strength": float("nan")}, "strength nan must be a number above 0 and at most 1"),
            ({"compose": "none", "strength": 0.5}, "strength 0.5 has no effect with compose none"),
        ({"vae_decode": "seamless"}, "vae_decode 'seamless' is not one of exact, fast, blend"),
        ({"spec_version": 0}, "spec_version 0 must be at least 1"),
    ],
)
def test_out_of_range_values_are_refused_in_one_short_line(changes, message):
    changes = {"prompt": "x", **changes}
    with pytest.raises(UsageError) as caught:
        RenderSpec(**changes)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text and len(text) < 300


@pytest.mark.parametrize(
    "changes",
    [
        {"guidance": 0.0}, {"guidance": 100}, {"guidance": "7.5"}, {"cpus_per_actor": 0.01}, {"cpus_per_actor": 1},
        {"cpus_per_actor": 2.0}, {"cpus_per_actor": 1024}, {"steps": 10_000}, {"width": 262_144, "out": "big.tif"},
        {"tile_batch": 64}, {"actors": 4096}, {"tile_size": 16384, "vae_tile_size": 16384}, {"prompt": "x" * 10_000},
    ],
)
def test_values_at_the_bounds_are_accepted(changes):
    spec = RenderSpec(**{"prompt": "x", **changes})
    # unset: None until planning fills the model's default (tests/cluster/test_plan_defaults.py)
    assert spec.guidance == (float(changes["guidance"]) if "guidance" in changes else None)


def test_flags_are_checked_like_files():
    with pytest.raises(UsageError, match="guidance nan must be a finite number"):
        build_spec(None, prompt="x", guidance=NAN)
    with pytest.raises(UsageError, match="cpus_per_actor inf must be"):
        build_spec(None, prompt="x", cpus_per_actor=INF)
    with pytest.raises(UsageError, match="spec_version comes from a spec file or picture, not a flag"):
        build_spec(None, prompt="x", spec_version=1)


def test_spec_version_is_a_content_field_carried_by_pictures():
    spec = RenderSpec(prompt="x")
    assert SPEC_VERSION == 5 and spec.spec_version == SPEC_VERSION
    assert "spec_version" in CONTENT_FIELDS and spec.portable()["spec_version"] == 5
    assert spec.content()["spec_version"] == 5


def test_composition_follows_the_version_and_older_content_keeps_its_old_keys():
    """Version 4 composes a canvas past the native area (256 x 256 px on the tiny model) in one
    stage at strength 0.6; versions 1-3 and small canvases render from noise, their content
    without the new keys, so stores and pictures made before them still match."""
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import resolve

    info = open_model(None)
    big = resolve(RenderSpec(prompt="x", width=512, height=320), info)
    assert (big.compose, big.strength, big.stages) == ("1", 0.6, 1)
    assert big.content()["compose"] == "1" and big.content()["strength"] == 0.6
    assert resolve(RenderSpec(prompt="x", width=512, height=320, compose="auto", strength=0.3), info).strength == 0.3
    for small in (RenderSpec(prompt="x", width=256, height=256), RenderSpec(prompt="x", width=512, height=320, spec_version=3)):
        plain = resolve(small, info)
        assert (plain.compose, plain.strength, plain.stages) == ("none", None, 0)
        assert "compose" not in plain.content() and "strength" not in plain.content()
    # version 5 composes a torus; version 4's auto did not, and its pictures and stores render as made
    assert resolve(RenderSpec(prompt="x", width=512, height=320, wrap="x"), info).compose == "1"
    old = resolve(RenderSpec(prompt="x", width=512, height=320, wrap="x", spec_version=4), info)
    assert old.compose == "none" and "compose" not in old.content()
    # a fixed grid could not wrap a 256 x 256 composition (one tile): auto renders from noise
    fixed = RenderSpec(prompt="x", width=512, height=512, wrap="x", shift_windows=False)
    assert resolve(fixed, info).compose == "none"
    assert resolve(RenderSpec(prompt="x", width=2048, height=2048, compose=" 03 "), info).compose == "3"
    assert RenderSpec(prompt="x", compose=2).compose == "2"  # `compose: 2` in a YAML file


def test_the_decode_follows_the_version_and_version_1_content_keeps_its_old_keys():
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import resolve

    info = open_model(None)
    assert resolve(RenderSpec(prompt="x"), info).vae_decode == "exact"
    old = resolve(RenderSpec(prompt="x", spec_version=1), info)
    assert old.vae_decode == "blend"  # a version-1 picture renders again as it was made
    assert "vae_decode" not in old.content()  # so its stores and pictures, which lack the key, match
    assert old.replace(vae_decode="exact").content()["vae_decode"] == "exact"
    assert resolve(RenderSpec(prompt="x", vae_decode="fast"), info).content()["vae_decode"] == "fast"


def test_shifted_windows_follow_the_version_and_older_content_keeps_its_old_keys():
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import resolve, step_grids

    info = open_model(None)
    new = resolve(RenderSpec(prompt="x", width=512, height=512, tile_size=256, seed=4), info)
    assert new.shift_windows is True and new.content()["shift_windows"] is True
    assert new.tile_overlap == 0  # shifted windows need none (benchmarks/seams.py)
    assert step_grids(new, info) == StepGrids(64, 64, 32, 0, seed=4)
    for version in (1, 2):  # their pictures render again on the fixed grid they were made with
        old = resolve(RenderSpec(prompt="x", spec_version=version), info)
        assert old.shift_windows is False and "shift_windows" not in old.content()
        assert not step_grids(old, info).shifted
        assert old.replace(shift_windows=True).content()["shift_windows"] is True
    off = resolve(RenderSpec(prompt="x", tile_size=256, shift_windows=False), info)
    assert off.content()["shift_windows"] is False and not step_grids(off, info).shifted
    assert off.tile_overlap == 32  # a fixed grid's default: an eighth of the tile


def test_shift_windows_flag_takes_on_or_off(capsys):
    from tests.helpers import run_cli

    code, _, err = run_cli(capsys, "render", "--prompt", "x", "--shift-windows", "sometimes", "--dry-run")
    assert code == 2 and err.strip() == "gigacanvas: error: argument --shift-windows: 'sometimes' is neither on nor off"
    with pytest.raises(UsageError, match="shift_windows 'on' is not a valid bool"):
        RenderSpec(prompt="x", shift_windows="on")


@pytest.mark.parametrize(
    "value, quoted",
    [
        ("short", "'short'"),
        ("y" * 1000, "'" + "y" * 39 + "..."),
        ("a\nb", "'a\\nb'"),
        (["lol"] * 10**6, "a list"),
        ({"a": [1]}, "a mapping"),
        (NAN, "nan"),
        pytest.param(10**5000, "an integer of about 5001 digits", id="huge-int"),
        (None, "None"),
    ],
)
def test_quote_is_short_whatever_the_value(value, quoted):
    assert _quote(value) == quoted and len(_quote(value)) <= 45


def test_a_shared_nested_list_is_not_expanded_into_a_message():
    bomb = ["lol"] * 10
    for _ in range(8):  # 10**9 strings if expanded
        bomb = [bomb] * 10
    with pytest.raises(UsageError, match=r"^prompt must be a single value, not a list$"):
        RenderSpec(prompt=bomb)


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**6000), max_value=10**6000)
    | st.floats() | st.text(max_size=30) | st.sampled_from(["nan", "inf", "-1e400", "1e39", "1.0e+10", " 7 ", "٣"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), _values, max_size=6))
def test_any_values_give_a_spec_or_one_short_usage_error(values):
    for make in (lambda: build_spec(None, **values), lambda: RenderSpec(**{"prompt": "x", **values})):
        try:
            spec = make()
        except UsageError as exc:
            assert "\n" not in str(exc) and 0 < len(str(exc)) < 300, str(exc)
        else:
            assert isinstance(spec, RenderSpec)


@pytest.mark.parametrize(
    ("out", "store"),
    [("s3://bucket/posters/p.png", "s3://bucket/posters/p.zarr"), ("gs://b/p.png", "gs://b/p.zarr"),
     ("file:///tmp/p.png", "file:///tmp/p.zarr"), ("/tmp/p.png", "/tmp/p.zarr")],
)
def test_an_out_url_is_taken_and_its_default_store_is_beside_it(out, store):
    assert RenderSpec(prompt="x", out=out).store_url == store


RELATIVE = [{"out": "poster.png"}, {"out": "file://posters/p.png"}, {"store": "p.zarr"}, {"store": "local://x/p.zarr"}, {}]


@pytest.mark.parametrize("fields", RELATIVE)
def test_a_ray_job_refuses_a_relative_out_or_store(fields, monkeypatch, tmp_path):
    """{} is the default out, gigacanvas.png: relative too."""
    monkeypatch.setenv(RAY_JOB_ENV, '{"runtime_env": {}}')
    monkeypatch.chdir(tmp_path)
    spec = RenderSpec(prompt="x", **({"out": "/data/p.png", **fields} if fields else {}))
    name = next(iter(fields), "out")
    folder = re.escape(str(tmp_path))
    with pytest.raises(UsageError, match=rf"^{name} '.+' is a relative path, which in a Ray job means Ray's folder {folder} .*; "
                       rf"pass an absolute --{name} path or a URL \(s3://bucket/\.\.\.\)$"):
        check_job_outputs(spec)
    monkeypatch.delenv(RAY_JOB_ENV)
    check_job_outputs(spec)  # outside a job, relative paths mean the user's folder


@pytest.mark.parametrize(
    "fields",
    [{"out": "/data/p.png"}, {"out": "~/p.png", "store": "~/p.zarr"}, {"out": "s3://b/p.png"},
     {"out": "file:///data/p.png", "store": "memory://p.zarr"}, {"out": "/data/p.png", "model": "models/sd35"}],
)
def test_a_ray_job_takes_absolute_outputs_urls_and_relative_inputs(fields, monkeypatch):
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    check_job_outputs(RenderSpec(prompt="x", **fields))


@pytest.mark.parametrize("command", [["render", "--prompt", "x", "--dry-run"], ["resume", "--dry-run"], ["status"]])
def test_an_empty_store_is_one_line_exit_2_not_this_folder(command, capsys, tmp_path, monkeypatch):
    from tests.helpers import run_cli

    monkeypatch.chdir(tmp_path)  # what an empty path would have meant
    (tmp_path / "notes.txt").write_text("mine")
    code, stdout, err = run_cli(capsys, *command, "--store", "")
    assert code == 2 and "is empty" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_wrap_is_content_only_when_on_and_refused_where_it_cannot_hold():
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import resolve, step_grids

    info = open_model(None)  # the tiny model: 256 px tiles
    assert "wrap" in CONTENT_FIELDS and "wrap" not in RenderSpec(prompt="x").content()  # older stores match
    assert RenderSpec(prompt="x", wrap="none").wrap is None  # one spelling of no wrap
    xy = resolve(RenderSpec(prompt="x", width=512, height=512, tile_size=256, seed=4, wrap="xy"), info)
    assert xy.content()["wrap"] == "xy" and xy.wrap_y and xy.wrap_x
    assert step_grids(xy, info) == StepGrids(64, 64, 32, 0, seed=4, wrap_y=True, wrap_x=True)
    with pytest.raises(UsageError, match=r"^wrap 'z' is not one of x, y, xy, none$"):
        RenderSpec(prompt="x", wrap="z")
    with pytest.raises(UsageError, match="wrap x needs vae_decode exact or fast"):
        RenderSpec(prompt="x", wrap="x", vae_decode="blend")
    with pytest.raises(UsageError, match="wrap y needs vae_decode exact or fast"):
        resolve(RenderSpec(prompt="x", wrap="y", spec_version=1), info)  # version 1 decodes with blend
    # a canvas no wider than a tile: one tile spans it, rolled every step so the model sees across
    # the join; a fixed grid's tile would never, so that is refused
    assert resolve(RenderSpec(prompt="x", width=256, height=512, wrap="x"), info).wrap == "x"
    with pytest.raises(UsageError, match="with width 256 no larger than tile_size 256 needs shifted windows"):
        resolve(RenderSpec(prompt="x", width=256, height=512, wrap="x", shift_windows=False), info)
    assert resolve(RenderSpec(prompt="x", width=512, wrap="x", shift_windows=False), info).wrap == "x"


def test_a_chosen_scheduler_is_content_only_when_set_and_must_be_a_class_name():
    """None (the model's own) leaves the key out, so stores and pictures made before the field
    existed still match; a chosen one decides the pixels, so it is part of the store's identity."""
    assert "scheduler" not in RenderSpec(prompt="x").content()
    chosen = RenderSpec(prompt="x", scheduler="EulerAncestralDiscreteScheduler")
    assert chosen.content()["scheduler"] == "EulerAncestralDiscreteScheduler" and "scheduler" in CONTENT_FIELDS
    assert "Sampler: EulerAncestralDiscreteScheduler," in chosen.parameters_line("fp32")
    assert "Sampler: Euler (flow matching)," in RenderSpec(prompt="x").parameters_line("fp32")  # as older pictures say
    for bad in ("Euler a", "", "x" * 5000):
        with pytest.raises(UsageError, match="^scheduler .* (is not a diffusers scheduler class name|characters long)"):
            RenderSpec(prompt="x", scheduler=bad)
