import json
import os
import shutil

import pytest

from gigacanvas.actors.loading import check_tile_size, open_model
from gigacanvas.errors import UsageError


def test_tiny_model_is_described_from_its_configs(tiny_model):
    info = open_model(tiny_model)
    assert (info.family, info.latent_channels, info.vae_scale_factor, info.patch_size) == ("sd3", 16, 8, 2)
    assert info.native_tile_px == 256 and info.align_px == 16
    assert info.fingerprint == open_model(tiny_model).fingerprint


def test_missing_model(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        open_model(str(tmp_path / "nope"))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickle_model_is_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04K\x01.")  # a real (harmless) pickle
    with pytest.raises(UsageError, match="pickle checkpoint"):
        open_model(str(path))


def test_non_sd3_folder_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UsageError, match="StableDiffusionPipeline folder; gigacanvas supports SD3"):
        open_model(str(tmp_path))


def test_folder_without_index_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no model_index.json"):
        open_model(str(tmp_path))


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    """A writable copy of the tiny model and the path of its VAE weights."""
    copy = tmp_path / "m"
    shutil.copytree(tiny_model, copy)
    return copy, next((copy / "vae").glob("*.safetensors"))


def test_component_with_pickle_weights_only_is_refused(model_copy):
    copy, weights = model_copy
    weights.rename(copy / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(UsageError, match="no safetensors weights in vae/.*pickle"):
        open_model(str(copy))


def test_fingerprint_changes_with_weights(model_copy, tiny_model):
    copy, weights = model_copy
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert open_model(str(copy)).fingerprint != open_model(tiny_model).fingerprint


def _pad_transformer(copy, flip: bool):
    """Grow the copy's transformer file past 4 MiB (still a valid file); maybe flip its middle byte."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = next((copy / "transformer").glob("*.safetensors"))
    tensors = load_file(str(weights))
    save_file({**tensors, "padding": torch.zeros(1 << 20)}, str(weights))
    if flip:
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01  # far from the first and the last MiB
        weights.write_bytes(bytes(data))


def test_fine_tunes_differing_in_their_middle_bytes_get_different_fingerprints(tiny_model, tmp_path):
    """Today's regression: hashing only each file's ends let a resume mix two models' latents."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_model, a)
    shutil.copytree(tiny_model, b)
    _pad_transformer(a, flip=False)
    _pad_transformer(b, flip=True)
    assert open_model(str(a)).fingerprint != open_model(str(b)).fingerprint


def test_opening_again_reads_the_hash_cache(model_copy, monkeypatch, tmp_path):
    from gigacanvas.actors import fingerprint

    copy, weights = model_copy
    monkeypatch.setenv("GIGACANVAS_CACHE", str(tmp_path / "cache"))
    calls = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda path: calls.append(path) or real(path))
    first = open_model(str(copy)).fingerprint
    assert len(calls) > 10
    calls.clear()
    assert open_model(str(copy)).fingerprint == first and calls == []
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert open_model(str(copy)).fingerprint == first and calls == [weights.resolve()]


def test_tile_size_is_bounded_by_the_positional_table(tiny_model):
    info = open_model(tiny_model)
    assert info.max_tile_px == 96 * 2 * 8 == 1536
    check_tile_size(info, 1536)
    with pytest.raises(
        UsageError,
        match=r"^tile_size 2048 is larger than this model's positional table allows \(1536 px\); use --tile-size 1536 or less$",
    ):
        check_tile_size(info, 2048)


def test_a_transformer_without_a_positional_limit_takes_any_tile(model_copy):
    copy, _ = model_copy
    config = json.loads((copy / "transformer" / "config.json").read_text())
    (copy / "transformer" / "config.json").write_text(json.dumps({**config, "pos_embed_max_size": None}))
    info = open_model(str(copy))
    assert info.max_tile_px is None
    check_tile_size(info, 8192)


SD35_LARGE = {
    "_class_name": "SD3Transformer2DModel", "attention_head_dim": 64, "caption_projection_dim": 2432,
    "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 38, "num_layers": 38,
    "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192,
    "qk_norm": "rms_norm", "sample_size": 128,
}
SD35_VAE = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3, "latent_channels": 16,
    "layers_per_block": 2, "mid_block_add_attention": True, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 1024, "scaling_factor": 1.5305, "shift_factor": 0.0609, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False, "use_quant_conv": False,
}


def test_sd35_large_configs_are_checked_without_their_memory(model_copy):
    """The full-size configs are built on the meta device: a third of a second, a few MB."""
    import resource

    copy, _ = model_copy
    (copy / "transformer" / "config.json").write_text(json.dumps(SD35_LARGE))
    (copy / "vae" / "config.json").write_text(json.dumps(SD35_VAE))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = open_model(str(copy))  # weights are only read as headers and hashed
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert (info.native_tile_px, info.max_tile_px, info.align_px) == (1024, 3072, 16)
    assert grown_mib < 200  # 8B parameters in bf16 would be 16 GB; the pos_embed buffer alone 358 MB


def test_a_full_disk_during_a_hub_download_names_the_path(monkeypatch):
    """A local disk failure is not "could not be fetched from the hub": it says where it failed."""
    import errno

    import huggingface_hub

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/hf/hub/models--org--m/blobs/abc.incomplete")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full)
    with pytest.raises(OSError) as caught:
        open_model("org/m")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, "/hf/hub/models--org--m/blobs/abc.incomplete")


def test_a_fifo_in_the_model_folder_is_refused_before_anything_opens_it(tiny_model, tmp_path):
    import os
    import shutil

    from gigacanvas.actors.loading import open_model
    from gigacanvas.errors import UsageError

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    weights = next((model / "transformer").glob("*.safetensors"))
    weights.unlink()
    os.mkfifo(weights)
    with pytest.raises(UsageError, match="is not a regular file"):
        open_model(str(model))


def test_a_base_model_beside_a_folder_model_is_refused_not_ignored(tiny_model, tmp_path):
    with pytest.raises(UsageError, match=r"^--base-model .* goes with a single-file --model only; model .* is a folder"):
        open_model(tiny_model, base_model=str(tmp_path))
    with pytest.raises(UsageError, match=r"^--base-model .* goes with a single-file --model only; pass --model too"):
        open_model(None, base_model=tiny_model)
