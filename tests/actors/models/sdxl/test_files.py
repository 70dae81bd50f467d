"""SDXL UNet single files: `convert` writes one that loads with --base-model; the original layout
is refused at planning in one line."""

import numpy as np
import pytest

from gigacanvas.actors.loading import load_adapter, open_model
from gigacanvas.errors import UsageError


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


def test_an_original_layout_unet_file_is_refused_at_planning(tiny_sdxl_model, tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "sd_xl_base.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4)}, str(path))
    with pytest.raises(UsageError) as caught:
        open_model(str(path), tiny_sdxl_model)
    assert str(caught.value) == (
        f"model {path} holds SDXL weights in the original layout (input_blocks...), which gigacanvas does not "
        "map yet; use a diffusers folder or a file in the diffusers layout"
    )
