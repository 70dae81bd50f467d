import json

import pytest

from gigacanvas.cluster.spec import RenderSpec, build_spec
from gigacanvas.errors import UsageError


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"width": 1000}, "width 1000 is not a positive multiple of 16; try 1008"),
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
