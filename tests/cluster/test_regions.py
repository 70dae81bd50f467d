"""The spec's regions: flag and spec-file spellings, one-line refusals, the record older pictures
match, and their scaling onto a composition's stages."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gigacanvas.cluster.cli import main
from gigacanvas.cluster.regions import Region, scale_regions
from gigacanvas.cluster.spec import RenderSpec, build_spec
from gigacanvas.cluster.specfile import load_spec_file
from gigacanvas.errors import UsageError

SKY = "0,0,512,120:a stormy sky"


def test_a_flag_a_string_and_a_mapping_are_the_same_region(tmp_path):
    flag = build_spec(None, prompt="a city", width=512, height=320, regions=[SKY, " 300, 200,200,100 : a title: space "])
    path = tmp_path / "poster.yaml"
    path.write_text(
        "prompt: a city\nwidth: 512\nheight: 320\nregions:\n"
        "  - {x: 0, y: 0, w: 512, h: 120, prompt: a stormy sky}\n  - '300,200,200,100:a title: space'\n"
    )
    assert build_spec(str(path)) == flag
    assert flag.regions == (Region(0, 0, 512, 120, "a stormy sky"), Region(300, 200, 200, 100, "a title: space"))


def test_regions_are_recorded_as_json_holds_them_and_older_records_match():
    spec = RenderSpec(prompt="a city", width=512, height=320, regions=[SKY], region_feather=32)
    content = spec.content()
    assert content["regions"] == [{"x": 0, "y": 0, "w": 512, "h": 120, "prompt": "a stormy sky"}]
    assert json.loads(json.dumps(content)) == content and content["region_feather"] == 32
    assert RenderSpec(**{**spec.portable(), "regions": json.loads(json.dumps(spec.portable()["regions"]))}) == spec
    plain = RenderSpec(prompt="a city")
    for record in (plain.content(), plain.portable()):  # a store or picture made before regions matches
        assert "regions" not in record and "region_feather" not in record


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        (["0,0,600,10:x"], r"^region 1 \(0,0,600,10\) reaches outside the 512x320 px canvas"),
        (["-1,0,10,10:x"], "reaches outside"),
        (["1,2,3:x"], "^region 1 '1,2,3:x' is not X,Y,W,H:prompt"),
        (["1,2,3,4"], "is not X,Y,W,H:prompt"),
        (["0,0,10,10:  "], "^region 1 has an empty prompt"),
        (["a,0,10,10:x"], "^region 1: x 'a' is not a whole number of pixels"),
        (["0,0,0,10:x"], "^region 1 is 0x10 px"),
        ([{"x": 0, "y": 0, "w": 1}], "^region 1 must have exactly the keys x, y, w, h, prompt"),
        ([{"x": 0.5, "y": 0, "w": 1, "h": 1, "prompt": "p"}], "x 0.5 is not a whole number"),
        ([SKY] * 17, "^regions: 17 given; at most 16"),
        ([f"0,0,10,10:{'p' * 10_001}"], "prompt is 10001 characters long"),
        (7, "^regions 7 must be a list of regions"),
    ],
)
def test_bad_regions_are_one_line(regions, message):
    with pytest.raises(UsageError, match=message) as caught:
        RenderSpec(prompt="a city", width=512, height=320, regions=regions)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_the_cli_refuses_bad_regions_with_exit_2_and_one_line(capsys):
    for argv in (["--region", "0,0,10,10:"], ["--region", "0,0,600,10:x"], ["--region-feather", "8"],
                 ["--region", SKY, "--region-feather", "-1"]):
        code = main(["render", "--prompt", "a city", "--width", "512", "--height", "320", "--dry-run", *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("gigacanvas: error: ") and err.count("\n") == 1, err


def test_a_picture_may_carry_regions(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"prompt": "a city", "width": 512, "height": 320, "regions": [SKY]}))
    assert load_spec_file(str(path))["regions"] == [SKY]
    path.write_text(json.dumps({"prompt": "a city", "width": [512]}))
    with pytest.raises(UsageError, match="key 'width' must be a single value"):
        load_spec_file(str(path))


@given(st.integers(1, 64), st.integers(1, 64), st.data())
def test_scaled_regions_stay_inside_the_smaller_canvas(width16, height16, data):
    width, height = width16 * 16, height16 * 16
    x, y = data.draw(st.integers(0, width - 1)), data.draw(st.integers(0, height - 1))
    region = Region(x, y, data.draw(st.integers(1, width - x)), data.draw(st.integers(1, height - y)), "p")
    to_w, to_h = data.draw(st.integers(1, width)), data.draw(st.integers(1, height))
    (scaled,) = scale_regions((region,), width, height, to_w, to_h)
    assert scaled.w >= 1 and scaled.h >= 1 and scaled.x >= 0 and scaled.y >= 0
    assert scaled.x + scaled.w <= to_w and scaled.y + scaled.h <= to_h
    assert abs(scaled.x - x * to_w / width) <= 1 and abs(scaled.y + scaled.h - (y + region.h) * to_h / height) <= 1.5


def test_a_composition_draws_the_regions_scaled(tiny_model):
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.compose import plan_stages
    from gigacanvas.cluster.plan import resolve

    info = open_model(tiny_model)
    spec = resolve(RenderSpec(prompt="a city", width=1024, height=512, steps=4, regions=["0,0,1024,128:sky"]), info)
    assert spec.region_feather == 64 and spec.compose == "1"
    (composition,) = plan_stages(spec, info)
    assert (composition.spec.width, composition.spec.height) == (368, 176)
    assert composition.spec.regions == (Region(0, 0, 368, 44, "sky"),) and composition.spec.region_feather == 22  # 64 x the mean scale 0.35
    assert composition.content["regions"] == [{"x": 0, "y": 0, "w": 368, "h": 44, "prompt": "sky"}]
    (plain,) = plan_stages(spec.replace(regions=(), region_feather=None), info)  # named as before regions
    assert "regions" not in plain.content and "region_feather" not in plain.content


def test_a_region_that_reaches_no_latent_pixel_is_refused_not_dropped(tiny_model, capsys):
    base = ["render", "--model", tiny_model, "--prompt", "a city", "--width", "512", "--height", "320", "--dry-run",
            "--compose", "none"]
    code = main([*base, "--region", "5,5,1,1:a star", "--region-feather", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "region 1 (5,5,1,1) covers no latent pixel's centre (a latent pixel is 8 px)" in err, err
    assert err.count("\n") == 1
    for argv in (["--region", "5,5,1,1:a star"], ["--region", "0,0,8,8:a star", "--region-feather", "0"]):
        assert main([*base, *argv]) == 0, capsys.readouterr().err  # feathered, or a whole latent pixel: drawn
        capsys.readouterr()


def test_a_region_prompt_that_is_not_text_says_so():
    with pytest.raises(UsageError, match=r"^region 1's prompt is a dict, not text"):
        RenderSpec(prompt="a city", width=512, height=320, regions=({"x": 0, "y": 0, "w": 64, "h": 64, "prompt": {"a": [1]}},))
