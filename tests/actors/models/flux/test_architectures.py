"""Full-size Flux.1 architectures on the meta device: counts and the FP8 memory plan."""

import pytest

from gigacanvas.actors.models.architectures import architecture, meta_transformer
from gigacanvas.actors.precision import weight_bytes


@pytest.fixture(scope="module")
def dev():
    return meta_transformer(architecture("flux.1-dev"))


def test_flux1_dev_has_11_9_billion_parameters(dev):
    assert round(sum(p.numel() for p in dev.parameters()) / 1e9, 1) == 11.9


def test_fp8_weights_take_at_most_0_55_of_bf16(dev):
    assert weight_bytes(dev, "fp8") <= 0.55 * weight_bytes(dev, "bf16")


def test_schnell_differs_only_by_the_guidance_embedding(dev):
    schnell = meta_transformer(architecture("flux.1-schnell"))
    names = {n for n, _ in dev.named_parameters()} - {n for n, _ in schnell.named_parameters()}
    assert names and all(n.startswith("time_text_embed.guidance_embedder.") for n in names)
