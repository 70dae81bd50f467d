import json
import shutil

import pytest

from gigacanvas.actors.loading import open_model
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
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(UsageError, match="StableDiffusionXLPipeline folder; gigacanvas supports SD3"):
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
