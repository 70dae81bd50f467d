"""The full-size SDXL UNet on the meta device: counts and the FP8 memory plan."""

import pytest

from gigacanvas.actors.models.architectures import architecture, meta_transformer
from gigacanvas.actors.precision import fp8_modules, weight_bytes


@pytest.fixture(scope="module")
def unet():
    return meta_transformer(architecture("sdxl-base"))


def test_the_sdxl_base_unet_has_its_2_567_billion_parameters(unet):
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684


def test_fp8_keeps_the_input_output_and_embedding_layers_and_halves_the_rest(unet):
    stored = fp8_modules(unet)
    for kept in ("conv_in", "conv_out", "time_embedding.linear_1", "add_embedding.linear_2"):
        assert kept not in stored
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q" in stored
    assert "down_blocks.1.attentions.0.proj_out" in stored  # only the transformer's own ^proj_out$ is kept
    assert weight_bytes(unet, "fp8") <= 0.51 * weight_bytes(unet, "bf16")
