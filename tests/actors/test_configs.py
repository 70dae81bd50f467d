"""Configs diffusers cannot build are refused in the driver, each as one line naming the file."""

import json
import re
import shutil
from pathlib import Path

import pytest

from gigacanvas.actors.loading import open_model
from gigacanvas.errors import UsageError


@pytest.fixture
def copy(tiny_model, tmp_path):
    path = tmp_path / "m"
    shutil.copytree(tiny_model, path)
    return path


def _edit(path, **changes):
    config = json.loads(path.read_text())
    config.update(changes)
    for key in [k for k, v in changes.items() if v is _DROP]:
        del config[key]
    path.write_text(json.dumps(config))


_DROP = object()


def _refused(copy, message):
    with pytest.raises(UsageError) as caught:
        open_model(str(copy))
    text = str(caught.value)
    assert "\n" not in text
    assert re.search(message, text), text
    return text


def test_an_index_that_is_not_an_object_is_refused(copy):
    (copy / "model_index.json").write_text('["StableDiffusion3Pipeline"]')
    _refused(copy, rf"^model index {re.escape(str(copy))}/model_index.json holds a list, not a JSON object; is the file damaged\?$")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"in_channels": _DROP}, r"config.json has no in_channels \(a positive whole number\); is it an SD3/SD3.5 transformer config\?$"),
        ({"patch_size": "2"}, r'config.json has "2" for patch_size \(a positive whole number\)'),
        ({"sample_size": 0}, r"config.json has 0 for sample_size"),
        ({"qk_norm": "bogus"}, r"config.json cannot be built by diffusers \(ValueError: unknown qk_norm: bogus.*\); is it an SD3/SD3.5 transformer config\?$"),
        ({"num_attention_heads": "2"}, r"config.json cannot be built by diffusers \(TypeError"),
        ({"_class_name": "FluxTransformer2DModel"}, r"is for FluxTransformer2DModel, not SD3Transformer2DModel; is it an SD3/SD3.5 model\?$"),
    ],
)
def test_transformer_configs_diffusers_cannot_use_are_refused(copy, change, message):
    _edit(copy / "transformer" / "config.json", **change)
    text = _refused(copy, message)
    assert text.startswith(f"model transformer config {copy}/transformer/config.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"block_out_channels": 8}, r"config.json cannot be built by diffusers \(TypeError: 'int' object is not subscriptable\); is it an SD3 VAE config\?$"),
        ({"norm_num_groups": 3}, r"cannot be built by diffusers \(ValueError: num_channels \(8\) must be divisible by num_groups \(3\)\)"),
        ({"down_block_types": ["Nope"] * 4}, r"\(ValueError: Nope does not exist.\)"),
        ({"_class_name": "AutoencoderTiny"}, r"is for AutoencoderTiny, not AutoencoderKL; is it an SD3/SD3.5 model\?$"),
    ],
)
def test_vae_configs_diffusers_cannot_build_are_refused(copy, change, message):
    _edit(copy / "vae" / "config.json", **change)
    assert _refused(copy, message).startswith(f"model config {copy}/vae/config.json")


def test_a_vae_of_another_latent_width_is_refused(copy):
    _edit(copy / "vae" / "config.json", latent_channels=4)
    _refused(copy, r"the transformer takes 16 latent channels but the VAE makes 4; the transformer and vae/ come from different models$")


def test_a_missing_scheduler_is_refused(copy):
    shutil.rmtree(copy / "scheduler")
    _refused(copy, rf"^model {re.escape(str(copy))} has no scheduler/scheduler_config.json; is the download complete\?$")


@pytest.mark.parametrize("name", ["StableDiffusion3Pipeline", "Nope", "__spec__", None, 3])
def test_a_scheduler_class_that_is_not_a_scheduler_is_refused(copy, name):
    _edit(copy / "scheduler" / "scheduler_config.json", _class_name=name)
    _refused(copy, rf"scheduler_config.json names {re.escape(json.dumps(name))}, which is not a diffusers scheduler; SD3 uses FlowMatchEulerDiscreteScheduler$")


@pytest.mark.parametrize("change", [{"shift": "three"}, {"num_train_timesteps": -5}, {"time_shift_type": "bogus"}])
def test_a_scheduler_config_that_cannot_be_set_up_is_refused(copy, change):
    _edit(copy / "scheduler" / "scheduler_config.json", **change)
    _refused(copy, r"scheduler_config.json cannot be set up as a FlowMatchEulerDiscreteScheduler by diffusers \(\w+: .*\); is it damaged\?$")


def test_a_scheduler_whose_step_depends_on_the_band_split_is_refused(copy):
    _edit(copy / "scheduler" / "scheduler_config.json", _class_name="DPMSolverMultistepScheduler", thresholding=True)
    _refused(copy, r"scheduler_config.json: \w+ uses dynamic thresholding.*row bands.*FlowMatchEulerDiscreteScheduler$")


@pytest.mark.parametrize(
    "name, why",
    [
        ("DPMSolverMultistepScheduler", r"keeps earlier steps' state \(model_outputs: a multistep solver\)"),
        ("UniPCMultistepScheduler", r"keeps earlier steps' state \(model_outputs: a multistep solver\)"),
        ("FlowMatchHeunDiscreteScheduler", r"calls the model more than once per step \(3 timesteps for 2 steps\)"),
    ],
)
def test_a_scheduler_a_resumed_band_cannot_step_is_refused(copy, name, why):
    _edit(copy / "scheduler" / "scheduler_config.json", _class_name=name)
    _refused(copy, rf"scheduler_config.json: {name} {why}.*such as FlowMatchEulerDiscreteScheduler$")


def test_a_brownian_tree_sampler_is_refused():
    import types

    from gigacanvas.actors.configs import _band_unsafe

    module = types.ModuleType("fake_sde_scheduler")
    module.BrownianTreeNoiseSampler = object  # what DPMSolverSDEScheduler's module holds (torchsde)
    tree = type("TreeSampler", (), {"__module__": module.__name__})
    import sys

    sys.modules[module.__name__] = module
    try:
        assert "Brownian tree" in _band_unsafe(tree, {})
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize(
    "change",
    [
        {"stochastic_sampling": False},
        {"stochastic_sampling": True},  # their step noise is keyed by position (actors/stepnoise.py)
        {"_class_name": "EulerAncestralDiscreteScheduler"},
        {"_class_name": "DDPMScheduler"},
        {"_class_name": "EulerDiscreteScheduler"},
    ],
)
def test_per_pixel_and_stochastic_schedulers_are_accepted(copy, change):
    from gigacanvas.actors.configs import check_scheduler
    from gigacanvas.actors.models.sd3 import FAMILY

    _edit(copy / "scheduler" / "scheduler_config.json", **change)
    check_scheduler(copy, FAMILY)


def test_a_damaged_embedded_config_in_a_single_file_is_refused(tiny_model, tmp_path):
    """A `convert` file carries its config in its metadata; a damaged one is refused like a file."""
    import torch
    from safetensors.torch import load_file, save_file

    from gigacanvas.actors.checkpoint import transformer_files

    tensors = load_file(str(transformer_files(Path(tiny_model))[0]))
    for config, message in (
        ("{not json", "carries a transformer config that is not JSON; it is damaged"),
        ("[1, 2]", "holds a list, not a JSON object"),
    ):
        path = tmp_path / "t.safetensors"
        save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(path), metadata={"transformer_config": config})
        with pytest.raises(UsageError, match=re.escape(message)):
            open_model(str(path), tiny_model)


@pytest.mark.parametrize("choice", ["FlowMatchEulerDiscreteScheduler", "FlowMatchLCMScheduler"])
def test_a_chosen_scheduler_the_family_allows_is_built_from_the_folders_config_instead(copy, choice):
    """`--scheduler` is the way around a folder whose own sampler the band loop cannot step."""
    from gigacanvas.actors.loading import load_adapter

    _edit(copy / "scheduler" / "scheduler_config.json", _class_name="DPMSolverMultistepScheduler", shift=2.0)
    _refused(copy, r"DPMSolverMultistepScheduler keeps earlier steps' state.*so pass --scheduler or set a single-step")
    scheduler = load_adapter(open_model(str(copy), None, choice), "cpu").make_scheduler(4, 32, 32, choice)
    assert type(scheduler).__name__ == choice and scheduler.config.shift == 2.0 and len(scheduler.timesteps) == 4


@pytest.mark.parametrize(
    "choice, why",
    [
        ("Nope", '"Nope" is not a diffusers scheduler'),
        ("DPMSolverMultistepScheduler", "DPMSolverMultistepScheduler keeps earlier steps' state (model_outputs: a multistep solver), which a resumed band would not have"),
        ("HeunDiscreteScheduler", "HeunDiscreteScheduler calls the model more than once per step (3 timesteps for 2 steps)"),
        ("EulerAncestralDiscreteScheduler", "EulerAncestralDiscreteScheduler is not made for SD3/SD3.5 models"),
    ],
)
def test_a_chosen_scheduler_the_family_does_not_allow_is_one_line_naming_those_it_does(copy, choice, why):
    with pytest.raises(UsageError) as caught:
        open_model(str(copy), None, choice)
    assert str(caught.value) == f"scheduler {why}; SD3/SD3.5 allows FlowMatchEulerDiscreteScheduler or FlowMatchLCMScheduler"


def test_a_stand_in_model_takes_no_chosen_scheduler():
    with pytest.raises(UsageError, match="^scheduler DDIMScheduler cannot be chosen for simulated .*; drop --scheduler$"):
        open_model("simulated:0", None, "DDIMScheduler")
