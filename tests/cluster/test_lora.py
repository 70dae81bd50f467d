"""`--lora FILE[:WEIGHT]`: the weight parsing (a table and a property), its bounds, and how LoRAs
sit in the spec (a local list; their fingerprints and weights are content). Pure: no model, no Ray."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gigacanvas import RenderSpec
from gigacanvas.cluster.lora import MAX_WEIGHT, LoraRef, check_record, parse_lora, record
from gigacanvas.cluster.spec import LOCAL_FIELDS, RESUME_FIELDS
from gigacanvas.errors import UsageError


@pytest.mark.parametrize(
    "entry, path, weight",
    [
        ("style.safetensors", "style.safetensors", 1.0),
        ("style.safetensors:0.8", "style.safetensors", 0.8),
        ("style.safetensors:-1", "style.safetensors", -1.0),
        ("style.safetensors:+.5", "style.safetensors", 0.5),
        ("style.safetensors:1e-1", "style.safetensors", 0.1),
        ("style.safetensors:0", "style.safetensors", 0.0),
        ("style.safetensors:-0", "style.safetensors", 0.0),
        ("s3://bucket/loras/style.safetensors", "s3://bucket/loras/style.safetensors", 1.0),
        ("s3://bucket/loras/style.safetensors:0.7", "s3://bucket/loras/style.safetensors", 0.7),
        ("C:\\loras\\style.safetensors", "C:\\loras\\style.safetensors", 1.0),
        ("C:\\loras\\style.safetensors:2", "C:\\loras\\style.safetensors", 2.0),
        ("a:b.safetensors", "a:b.safetensors", 1.0),  # the text after the colon is no number
        ("style.safetensors:1_0", "style.safetensors:1_0", 1.0),  # float() reads 10; not a plain number
        ("style.safetensors:0x1", "style.safetensors:0x1", 1.0),
        ("style.safetensors: 1", "style.safetensors: 1", 1.0),
    ],
)
def test_the_weight_is_the_text_after_the_last_colon_only_when_it_is_a_number(entry, path, weight):
    assert parse_lora(entry) == LoraRef(path, weight)
    assert math.copysign(1, parse_lora(entry).weight) == 1 or weight < 0  # -0 is recorded as 0


@pytest.mark.parametrize(
    "entry, says",
    [
        ("style.safetensors:inf", "weight 'inf'"),
        ("style.safetensors:-Infinity", "weight '-Infinity'"),
        ("style.safetensors:nan", "weight 'nan'"),
        ("style.safetensors:10.5", "weight '10.5'"),
        ("style.safetensors:-1e3", "weight '-1e3'"),
        (":0.5", "names no file"),
        ("", "names no file"),
    ],
)
def test_a_bad_weight_or_no_file_is_one_line(entry, says):
    with pytest.raises(UsageError) as caught:
        parse_lora(entry)
    assert says in str(caught.value) and "\n" not in str(caught.value)


paths = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda p: p.strip() and not p.endswith(":")
)


@settings(max_examples=40)
@given(paths, st.floats(-MAX_WEIGHT, MAX_WEIGHT, allow_nan=False))
def test_any_path_with_a_weight_appended_parses_back(path, weight):
    assert parse_lora(f"{path}:{weight!r}") == LoraRef(path, weight + 0.0)


@settings(max_examples=40)
@given(paths.filter(lambda p: ":" not in p), st.sampled_from(["", ":abc", ":\\x.safetensors", "://b/c.safetensors", ":1.5x"]))
def test_a_path_is_kept_whole_when_no_number_follows_its_last_colon(path, tail):
    assert parse_lora(path + tail) == LoraRef(path + tail, 1.0)


def test_the_record_is_fingerprints_and_weights_in_order():
    assert record([]) is None
    assert record([("0123456789abcdef", 1), ("fedcba9876543210", 0.5)]) == "0123456789abcdef:1.0 fedcba9876543210:0.5"
    check_record("0123456789abcdef:1.0 fedcba9876543210:-0.5")
    for bad in ("0123456789abcdef", "xyz:1.0", "0123456789abcdef:1.0  fedcba9876543210:1.0", "0123456789abcdef:1:2"):
        with pytest.raises(UsageError, match="not a LoRA record"):
            check_record(bad)


def test_the_spec_holds_the_files_as_a_local_list_and_the_record_as_content():
    spec = RenderSpec(prompt="a fox", lora=["a.safetensors:0.5", "b.safetensors"])
    assert spec.lora == ("a.safetensors:0.5", "b.safetensors")
    assert RenderSpec(prompt="a fox", lora="a.safetensors").lora == ("a.safetensors",)
    assert "lora" in LOCAL_FIELDS and "lora" in RESUME_FIELDS
    assert "lora" not in spec.portable() and spec.resume_record()["lora"] == ("a.safetensors:0.5", "b.safetensors")
    # no LoRA: the content is what it was before the field existed, so older pictures still match
    assert "lora_fingerprints" not in spec.content()
    made = spec.replace(lora_fingerprints="0123456789abcdef:0.5")
    assert made.content()["lora_fingerprints"] == "0123456789abcdef:0.5"
    assert made.portable()["lora_fingerprints"] == "0123456789abcdef:0.5"


@pytest.mark.parametrize(
    "lora, says",
    [
        ("a.safetensors:11", "weight '11'"),
        ([1, 2], "must be a list of FILE[:WEIGHT] texts"),
        (["x.safetensors"] * 17, "at most 16"),
    ],
)
def test_a_bad_lora_value_is_refused_by_the_spec(lora, says):
    with pytest.raises(UsageError) as caught:
        RenderSpec(prompt="a fox", lora=lora)
    assert says in str(caught.value)


def test_a_spec_file_takes_a_lora_list(tmp_path):
    from gigacanvas.cluster.specfile import load_spec_file

    path = tmp_path / "s.yaml"
    path.write_text("prompt: a fox\nlora:\n  - a.safetensors:0.5\n  - b.safetensors\n")
    assert load_spec_file(str(path))["lora"] == ["a.safetensors:0.5", "b.safetensors"]
    path.write_text("prompt: a fox\nlora: [[nested]]\n")
    with pytest.raises(UsageError, match="each entry of .lora. must be a \"FILE\[:WEIGHT\]\" string"):
        load_spec_file(str(path))
