"""Transformer files: convert, inspect, the two scale spellings, E5M2, damaged files."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gigacanvas.actors.checkpoint import inspect_checkpoint, iter_tensors, transformer_files
from gigacanvas.actors.convert import convert_transformer
from gigacanvas.actors.loading import check_weights_precision, open_model
from gigacanvas.actors.models.sd3 import FAMILY as SD3
from gigacanvas.errors import UsageError

FORMAT = SD3.checkpoint_format


@pytest.fixture(scope="module")
def reference(tiny_model):
    return load_file(str(transformer_files(Path(tiny_model))[0]))


@pytest.mark.parametrize("scale_name", ["weight_scale", "scale_weight"])
def test_fp8_file_has_scaled_e4m3_linears_and_loads_back_within_fp8_error(tiny_model, reference, tmp_path, scale_name):
    path = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8", scale_name)
    info = inspect_checkpoint(path, SD3)
    assert (info.layout, info.precision, info.scale_name) == ("diffusers", "fp8", scale_name)
    assert info.metadata["format"] == FORMAT and info.metadata["source_fingerprint"] == open_model(tiny_model).fingerprint
    assert info.config["num_layers"] == 2
    with safe_open(str(path), "pt") as f:
        q = f.get_tensor("transformer_blocks.0.attn.to_q.weight")
        adaln = f.get_tensor("transformer_blocks.0.norm1.linear.weight")
        assert q.dtype == adaln.dtype == torch.float8_e4m3fn
        assert f.get_tensor(f"transformer_blocks.0.attn.to_q.{scale_name}").dtype == torch.float32
        assert f.get_tensor("proj_out.weight").dtype == torch.bfloat16  # kept in higher precision
    loaded = dict(iter_tensors(info, lambda key: torch.float32))
    assert set(loaded) == set(reference)
    for key, ref in reference.items():
        # e4m3 keeps 3 mantissa bits: relative error at most 2^-4 of the tensor's range
        tolerance = ref.abs().max().item() * 2**-4 + 1e-6
        assert (loaded[key] - ref).abs().max().item() <= tolerance, key


def test_dropping_the_scale_is_detectably_wrong(tiny_model, reference, tmp_path):
    """What a loader that misses the scale sees: weights hundreds of times too large."""
    path = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8", "scale_weight")
    tensors = load_file(str(path))
    renamed = {k.replace("scale_weight", "mystery_scale"): v for k, v in tensors.items()}
    save_file(renamed, str(tmp_path / "u.safetensors"))
    unscaled = dict(iter_tensors(inspect_checkpoint(tmp_path / "u.safetensors", SD3), lambda key: torch.float32))
    key = "transformer_blocks.0.attn.to_q.weight"
    assert unscaled[key].abs().max() > 100 * reference[key].abs().max()


def test_other_precisions_and_metadata_checks(tiny_model, tmp_path):
    bf16 = convert_transformer(tiny_model, str(tmp_path / "b.safetensors"), "bf16")
    assert inspect_checkpoint(bf16, SD3).precision == "bf16"
    info = open_model(str(bf16), tiny_model)
    assert info.transformer_file == str(bf16.resolve()) and info.weights_precision == "bf16"
    with pytest.raises(UsageError, match="stores bf16 weights, not float8_e4m3fn, and --strict-precision is set"):
        check_weights_precision(info, "fp8", strict=True)
    assert check_weights_precision(info, "fp8", strict=False) is None
    # a file whose metadata claims fp8 but whose weights are not
    tensors = load_file(str(bf16))
    save_file(tensors, str(tmp_path / "liar.safetensors"), metadata={"format": FORMAT, "precision": "fp8"})
    with pytest.raises(UsageError, match="says its precision is fp8 but its weights are bf16"):
        inspect_checkpoint(tmp_path / "liar.safetensors", SD3)


def test_e5m2_is_recognised_and_reported(tiny_model, tmp_path):
    tensors = load_file(str(convert_transformer(tiny_model, str(tmp_path / "b.safetensors"), "bf16")))
    e5m2 = {k: (v.to(torch.float8_e5m2) if k.endswith("to_q.weight") else v) for k, v in tensors.items()}
    save_file(e5m2, str(tmp_path / "e.safetensors"))
    info = open_model(str(tmp_path / "e.safetensors"), tiny_model)
    assert info.weights_precision == "fp8-e5m2"
    assert "E5M2" in check_weights_precision(info, "fp8", strict=False)
    with pytest.raises(UsageError, match=r"stores E5M2 \(float8_e5m2\) weights, not float8_e4m3fn"):
        check_weights_precision(info, "fp8", strict=True)
    loaded = dict(iter_tensors(inspect_checkpoint(tmp_path / "e.safetensors", SD3), lambda key: torch.float32))
    key = "transformer_blocks.0.attn.to_q.weight"
    assert torch.equal(loaded[key], e5m2[key].to(torch.float32))  # upcast exactly, not read as e4m3


@pytest.mark.parametrize("scaled", [False, True])
def test_original_sd3_layout_is_mapped_with_diffusers_converter(tiny_model, reference, tmp_path, scaled):
    """A ComfyUI-style file: original key names under model.diffusion_model., maybe scaled FP8."""
    original = _to_original(reference)
    tensors = {}
    for key, value in original.items():
        name = "model.diffusion_model." + key
        if scaled and key.endswith("qkv.weight"):  # ComfyUI fp8_scaled: e4m3 weight + scale_weight
            scale = value.abs().max() / 448
            tensors[name] = (value / scale).to(torch.float8_e4m3fn)
            tensors[name[: -len("weight")] + "scale_weight"] = scale.reshape(1)
            tensors[name[: -len("weight")] + "scale_input"] = torch.ones(1)
        else:
            tensors[name] = value
    if scaled:
        tensors["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "orig.safetensors"
    save_file(tensors, str(path))
    info = inspect_checkpoint(path, SD3)
    assert info.layout == "original" and info.precision == ("fp8" if scaled else "fp32")
    assert open_model(str(path), tiny_model).transformer_file  # planning maps its header's shapes (meta tensors) and finds they fit
    loaded = dict(iter_tensors(info, lambda key: torch.float32))
    assert set(loaded) == set(reference)
    for key, ref in reference.items():
        if scaled:
            assert (loaded[key] - ref).abs().max() <= ref.abs().max() * 2**-4 + 1e-6, key
        else:
            assert torch.equal(loaded[key], ref), key


def _to_original(reference):
    """SD3 original-layout tensors for a diffusers state dict (joint_blocks with fused qkv)."""
    out = {}
    n = 1 + max(int(k.split(".")[1]) for k in reference if k.startswith("transformer_blocks."))
    for i in range(n):
        d, o = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        for side, attn, extra, norm, ff in (("x_block", "", "to_out.0", "norm1", "ff"), ("context_block", "add_", "to_add_out", "norm1_context", "ff_context")):
            for suffix in ("weight", "bias"):
                if side == "x_block":
                    q, k, v = (reference[f"{d}attn.to_{x}.{suffix}"] for x in "qkv")
                else:
                    q, k, v = (reference.get(f"{d}attn.add_{x}_proj.{suffix}") for x in "qkv")
                    if q is None:
                        continue
                out[f"{o}{side}.attn.qkv.{suffix}"] = torch.cat([q, k, v])
                key = f"{d}attn.{extra}.{suffix}"
                if key in reference:
                    out[f"{o}{side}.attn.proj.{suffix}"] = reference[key]
                for a, b in (("net.0.proj", "fc1"), ("net.2", "fc2")):
                    if f"{d}{ff}.{a}.{suffix}" in reference:
                        out[f"{o}{side}.mlp.{b}.{suffix}"] = reference[f"{d}{ff}.{a}.{suffix}"]
                if f"{d}{norm}.linear.{suffix}" in reference:
                    t = reference[f"{d}{norm}.linear.{suffix}"]
                    if side == "context_block" and i == n - 1:  # the last context block swaps scale/shift
                        shift, scale = t.chunk(2)
                        t = torch.cat([scale, shift])
                    out[f"{o}{side}.adaLN_modulation.1.{suffix}"] = t
            for name in ("norm_q", "norm_k"):
                key = f"{d}attn.{name if side == 'x_block' else 'norm_added_' + name[-1]}.weight"
                if key in reference:
                    out[f"{o}{side}.attn.ln_{name[-1]}.weight"] = reference[key]
    table = {
        "pos_embed.pos_embed": "pos_embed",
        "pos_embed.proj.weight": "x_embedder.proj.weight",
        "pos_embed.proj.bias": "x_embedder.proj.bias",
        "time_text_embed.timestep_embedder.linear_1.weight": "t_embedder.mlp.0.weight",
        "time_text_embed.timestep_embedder.linear_1.bias": "t_embedder.mlp.0.bias",
        "time_text_embed.timestep_embedder.linear_2.weight": "t_embedder.mlp.2.weight",
        "time_text_embed.timestep_embedder.linear_2.bias": "t_embedder.mlp.2.bias",
        "time_text_embed.text_embedder.linear_1.weight": "y_embedder.mlp.0.weight",
        "time_text_embed.text_embedder.linear_1.bias": "y_embedder.mlp.0.bias",
        "time_text_embed.text_embedder.linear_2.weight": "y_embedder.mlp.2.weight",
        "time_text_embed.text_embedder.linear_2.bias": "y_embedder.mlp.2.bias",
        "context_embedder.weight": "context_embedder.weight",
        "context_embedder.bias": "context_embedder.bias",
        "proj_out.weight": "final_layer.linear.weight",
        "proj_out.bias": "final_layer.linear.bias",
    }
    for new, old in table.items():
        out[old] = reference[new]
    for suffix in ("weight", "bias"):
        shift, scale = reference[f"norm_out.linear.{suffix}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{suffix}"] = torch.cat([scale, shift])
    return out


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_damaged_files_are_one_clear_error(tiny_model, tmp_path, damage):
    good = convert_transformer(tiny_model, str(tmp_path / "g.safetensors"), "fp8").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes({"garbage": b"\x00\x01not safetensors" * 50, "truncated": good[: len(good) // 2], "empty": b""}[damage])
    with pytest.raises(UsageError, match="not a readable safetensors file"):
        open_model(str(bad), tiny_model)


def test_file_without_transformer_is_refused(tiny_model, tmp_path):
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(2, 2)}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(UsageError, match="holds no SD3 transformer weights"):
        open_model(str(tmp_path / "vae.safetensors"), tiny_model)


def test_single_file_needs_a_base_model(tiny_model, tmp_path):
    path = convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), "fp8")
    with pytest.raises(UsageError, match="pass --base-model"):
        open_model(str(path))


def test_convert_refuses_bad_targets(tiny_model, tmp_path):
    with pytest.raises(UsageError, match="must end in .safetensors"):
        convert_transformer(tiny_model, str(tmp_path / "t.pt"))
    with pytest.raises(UsageError, match="scale name"):
        convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), scale_name="scale")
    with pytest.raises(UsageError, match="cannot be written"):
        convert_transformer(tiny_model, str(tmp_path / "t.safetensors"), precision="int4")
    assert list(tmp_path.iterdir()) == []


def test_hub_id_offline_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    code = "from gigacanvas.actors.loading import open_model\nopen_model('stabilityai/stable-diffusion-3.5-large')"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert "not a local path and could not be fetched from the Hugging Face hub" in run.stderr
