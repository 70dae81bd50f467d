"""SDXL UNet single files: `convert` writes one that loads with --base-model; an original-layout
checkpoint loads its UNet through diffusers' converter; another model's or a damaged file is one
line at planning."""

import re

import numpy as np
import pytest

from gigacanvas.actors.loading import load_adapter, open_model


def test_a_converted_unet_file_loads_with_its_base_folder(tiny_sdxl_model, tmp_path):
    import torch

    from gigacanvas.actors.convert import convert_transformer

    out = convert_transformer(tiny_sdxl_model, str(tmp_path / "unet-fp8.safetensors"), "fp8")
    info = open_model(str(out), tiny_sdxl_model)
    folder = open_model(tiny_sdxl_model)
    assert (info.family, info.weights_precision, info.transformer_file) == ("sdxl", "fp8", str(out.resolve()))
    assert info.fingerprint != folder.fingerprint
    tiles = np.random.default_rng(0).standard_normal((1, 4, 16, 16)).astype(np.float32)
    preds = []
    for model in (info, folder):
        adapter = load_adapter(model, "cpu")
        cond = adapter.encode_prompt("a fox", "", 1.0)
        preds.append(adapter.predict(tiles, 500.0, cond, 1.0))
    assert adapter._load("transformer").conv_in.weight.dtype == torch.float32
    error = np.abs(preds[0] - preds[1]).max() / np.abs(preds[1]).max()
    assert 0 < error < 0.1  # FP8-rounded weights: close, not equal


def _original_layout(state: dict, config: dict) -> dict:
    """The UNet's tensors under the original (LDM) names: diffusers' `convert_ldm_unet_checkpoint`
    mapping, inverted (diffusers has no converter that way round), for any block count and depth."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    layers = config["layers_per_block"]
    top = {**DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], **DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]}
    resnet = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
              "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
    up_attention = {b for b, kind in enumerate(config["up_block_types"]) if "CrossAttn" in kind}

    def rename(key: str) -> str:
        if key in top:
            return top[key]
        if m := re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.([^.]+)(.*)", key):
            side, b, kind, j, name, rest = m[1], int(m[2]), m[3], int(m[4]), m[5], m[6]
            index = (1 if side == "down" else 0) + b * (layers + 1) + j
            name = resnet.get(name, name) if kind == "resnets" else name
            return f"{'input' if side == 'down' else 'output'}_blocks.{index}.{0 if kind == 'resnets' else 1}.{name}{rest}"
        if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            return f"input_blocks.{1 + int(m[1]) * (layers + 1) + layers}.0.op.{m[2]}"
        if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            b = int(m[1])
            return f"output_blocks.{b * (layers + 1) + layers}.{2 if b in up_attention else 1}.conv.{m[2]}"
        m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.([^.]+)(.*)", key)
        if m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{resnet.get(m[3], m[3])}{m[4]}"
        return f"middle_block.1.{m[3]}{m[4]}"

    return {"model.diffusion_model." + rename(key): value for key, value in state.items()}


def test_a_full_original_layout_checkpoint_loads_its_unet_as_the_folders(tiny_sdxl_model, tmp_path):
    """A checkpoint as people download them (sd_xl_base_1.0.safetensors): the UNet under
    `model.diffusion_model.input_blocks...` beside a VAE and text encoders, which are not used
    (the base folder's are). Its UNet, mapped by diffusers' converter, is the folder's bit for bit,
    so its renders are the folder model's."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl_model, subfolder="unet")
    state = unet.state_dict()
    original = _original_layout(state, dict(unet.config))
    assert convert_ldm_unet_checkpoint(dict(original), dict(unet.config)).keys() == state.keys()  # the inversion is whole
    others = {"first_stage_model.decoder.conv_in.weight": torch.ones(2, 2), "conditioner.embedders.0.proj": torch.ones(3)}
    path = tmp_path / "sd_xl_tiny.safetensors"
    save_file({**{k: v.contiguous() for k, v in original.items()}, **others}, str(path))

    info = open_model(str(path), tiny_sdxl_model)
    folder = open_model(tiny_sdxl_model)
    assert (info.family, info.weights_precision, info.transformer_file) == ("sdxl", "fp32", str(path.resolve()))
    assert info.fingerprint != folder.fingerprint
    loaded = load_adapter(info, "cpu")._load("transformer").state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize(
    "kind, message",
    [
        # another size of UNet: refused at planning from the header, not on every actor's load
        ("resized", "does not fit the SDXL unet config (size mismatch for conv_in.weight: [32, 4, 3, 3] in the file, [16, 4, 3, 3] in the config)"),
        # input_blocks but not an SDXL UNet's (SD 1.5's has them too, without the text-time embedding)
        ("partial", "holds SDXL weights in the original layout that diffusers' converter cannot map (KeyError: "),
        ("flux", "holds no SDXL transformer weights (no down_blocks or input_blocks)"),
        ("damaged", "is not a readable safetensors file"),
    ],
)
def test_a_damaged_or_other_models_file_is_one_line_at_planning(tiny_sdxl_model, tmp_path, capsys, kind, message):
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from tests.helpers import run_cli

    path = tmp_path / "other.safetensors"
    if kind in ("resized", "partial"):
        unet = UNet2DConditionModel.from_pretrained(tiny_sdxl_model, subfolder="unet")
        original = {k: v.contiguous() for k, v in _original_layout(unet.state_dict(), dict(unet.config)).items()}
    if kind == "resized":
        save_file({**original, "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}, str(path))
    elif kind == "partial":
        save_file({k: v for k, v in original.items() if "label_emb" not in k}, str(path))
    elif kind == "flux":
        save_file({"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.zeros(4, 4)}, str(path))
    else:
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")  # a header cut short
    code, _, err = run_cli(
        capsys, "render", "--model", str(path), "--base-model", tiny_sdxl_model, "--prompt", "a fox", "--out", str(tmp_path / "p.png"), "--dry-run"
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err
