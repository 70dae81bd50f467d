"""Spec files and pictures as hostile input: nothing read by `--spec` may hang, fill memory or pick paths."""

import json
import os

import numpy as np
import pytest

from gigacanvas.cluster.spec import SPEC_VERSION, build_spec, load_spec_file
from gigacanvas.errors import UsageError
from gigacanvas.storage import write_png
from tests.helpers import error_reading_fifo


def _refused(path, message):
    with pytest.raises(UsageError) as caught:
        build_spec(str(path))
    text = str(caught.value)
    assert message in text, text
    assert "\n" not in text and len(text) < 540 + len(str(path))  # the unknown-key line lists every key (39)


def _yaml(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _picture(tmp_path, spec, name="p.png"):
    return write_png(tmp_path / name, np.zeros((2, 2, 3), np.uint8), spec, "")


@pytest.mark.parametrize(
    "text, message",
    [
        ("prompt: x\nguidance: .nan\n", "guidance nan must be a finite number from 0 to 100"),
        ("prompt: x\nguidance: 1e39\n", "guidance 1e+39 must be a finite number from 0 to 100"),
        ("prompt: x\ncpus_per_actor: .inf\n", "cpus_per_actor inf must be a finite number"),
        ("prompt: x\nsteps: 1.0e+10\n", "steps 10000000000 must be at most 10000"),
        ("prompt: x\nguidance: true\n", "guidance True is not a valid float"),
        ("prompt: [a, b]\n", "key 'prompt' must be a single value, not a list"),
        ("prompt: {a: b}\n", "key 'prompt' must be a single value, not a mapping"),
        ("prompt: x\nseed: 2024-01-01\n", "key 'seed' must be text, a number or true/false, not a date"),
        ("prompt: !!binary aGVsbG8=\n", "key 'prompt' must be text, a number or true/false, not binary data"),
        ("prompt: !!python/object:os.system x\n", "is not valid YAML (could not determine a constructor"),
        ("prompt: x\n" + "w" * 100 + ": 1\n", "unknown key '" + "w" * 39 + "...; valid keys"),
        ("prompt: &a x\nnegative_prompt: *a\n", "uses YAML aliases, which gigacanvas does not accept"),
        ("prompt: x\nsteps: " + "[" * 5000 + "\n", "is not valid YAML"),
    ],
)
def test_yaml_values_are_checked(tmp_path, text, message):
    _refused(_yaml(tmp_path, text), message)


def test_json_values_are_checked(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"prompt": "x", "guidance": NaN}')
    _refused(path, "guidance nan must be a finite number")
    path.write_text(json.dumps({"prompt": "x", "negative_prompt": [["deep"]]}))
    _refused(path, "key 'negative_prompt' must be a single value, not a list")
    path.write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _refused(path, "is not valid JSON")


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    # 10**6 strings once expanded; the unpatched code put their repr (7 MB) into the message.
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    _refused(_yaml(tmp_path, "\n".join(lines + ["prompt: *a5"]) + "\n"), "uses YAML aliases")


def test_a_spec_file_over_a_mebibyte_is_refused(tmp_path):
    path = _yaml(tmp_path, "prompt: x\n#" + "#" * (1 << 20) + "\n")
    _refused(path, f"spec file {path} is larger than 1 MiB; a spec is a few lines of text")
    path.write_text("prompt: x\n" + "#" * ((1 << 20) - 20) + "\n")
    assert build_spec(str(path)).prompt == "x"


def test_a_folder_is_not_a_spec_file(tmp_path):
    _refused(tmp_path, "is not a regular file but a folder")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_before_it_is_read():
    _refused("/dev/zero", "spec file /dev/zero is not a regular file but a character device")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["spec.yaml", "spec.png"])
def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    error = error_reading_fifo(lambda f: load_spec_file(str(f)), fifo)
    assert isinstance(error, UsageError), error
    assert "is not a regular file but a FIFO" in str(error)


@pytest.mark.parametrize("key", ["store", "out", "overwrite", "address"])
def test_a_picture_may_not_set_local_fields(tmp_path, key):
    path = _picture(tmp_path, {"prompt": "x", key: "/home" if key != "overwrite" else True})
    _refused(path, f"picture {path} sets '{key}', which only your own flags or spec file may set")


def test_a_spec_file_the_user_wrote_may_set_local_fields(tmp_path):
    path = _yaml(tmp_path, "prompt: x\nstore: s.zarr\nout: o.png\noverwrite: true\naddress: auto\n")
    spec = build_spec(str(path))
    assert (spec.store, spec.out, spec.overwrite, spec.address) == ("s.zarr", "o.png", True, "auto")


@pytest.mark.parametrize(
    "chunk, message",
    [
        ({"prompt": ["x"]}, "key 'prompt' must be a single value, not a list"),
        ({"prompt": "x", "seed": {"a": 1}}, "key 'seed' must be a single value, not a mapping"),
        ({"prompt": "x", "colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_a_picture_with_odd_values_is_refused(tmp_path, chunk, message):
    path = _picture(tmp_path, chunk)
    _refused(path, f"picture {path}: {message}")


def test_a_picture_from_a_newer_gigacanvas_is_refused(tmp_path):
    newer = SPEC_VERSION + 1
    path = _picture(tmp_path, {"prompt": "x", "spec_version": newer})
    _refused(
        path,
        f"picture {path} was made by a newer gigacanvas (spec version {newer}; this one knows up to {SPEC_VERSION}); "
        "upgrade gigacanvas to render it again",
    )
    yaml_file = _yaml(tmp_path, f"prompt: x\nspec-version: {newer}\n")
    _refused(yaml_file, f"spec file {yaml_file} was made by a newer gigacanvas (spec version {newer};")


def test_a_picture_without_a_version_is_version_1(tmp_path):
    assert build_spec(str(_picture(tmp_path, {"prompt": "x", "seed": 4}))).spec_version == 1


def test_a_picture_renders_again_with_its_own_spec(tmp_path):
    spec = build_spec(None, prompt="a fox", width=512, guidance=3.5, out=str(tmp_path / "fox.png"))
    path = _picture(tmp_path, spec.portable(), "fox.png")
    again = build_spec(str(path), out=str(tmp_path / "again.png"))
    assert again.portable() == spec.portable() and again.content() == spec.content()


@pytest.mark.parametrize(
    "model", ["s3://their-bucket/model", "https://example.invalid/model", "their/model", "gs://b/m.safetensors"]
)
@pytest.mark.parametrize("name", ["model", "base_model"])
def test_a_picture_cannot_make_gigacanvas_download_a_model(tmp_path, name, model):
    """A downloaded picture may name the local model it was made with, never a URL or hub id to fetch
    (or to list a bucket with the user's credentials); the user's own flag replaces it."""
    path = _picture(tmp_path, {"prompt": "x", "spec_version": SPEC_VERSION, name: model})
    flag = "--" + name.replace("_", "-")
    with pytest.raises(UsageError, match=rf"^picture .* names {name.replace('_', ' ')} '{model}', a URL or hub id: .* pass {flag} yourself$"):
        build_spec(str(path))
    assert getattr(build_spec(str(path), **{name: str(tmp_path)}), name) == str(tmp_path)
    local = _picture(tmp_path, {"prompt": "x", "spec_version": SPEC_VERSION, name: str(tmp_path)}, "local.png")
    assert getattr(build_spec(str(local)), name) == str(tmp_path)  # a local path: rendering it again needs no flag
    for url in (f"file://{tmp_path}", f"local://{tmp_path}"):  # local paths too, as the loader reads them
        local = _picture(tmp_path, {"prompt": "x", "spec_version": SPEC_VERSION, name: url}, "url.png")
        assert getattr(build_spec(str(local)), name) == url
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text(f"prompt: x\n{name}: {model}\n")
    assert getattr(build_spec(str(yaml_file)), name) == model  # the user's own spec file may name anything


def test_lora_entries_that_are_not_strings_say_what_an_entry_is(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("prompt: x\nlora:\n  - {file: a.safetensors, weight: 0.5}\n")
    _refused(path, f'spec file {path}: each entry of \'lora\' must be a "FILE[:WEIGHT]" string')
