"""Full-size SD3.5 architectures on the meta device: counts and the FP8 memory plan."""

import re

import pytest

from gigacanvas.actors.models.architectures import meta_transformer
from gigacanvas.actors.models.sd3.architectures import SD35_LARGE, SD35_MEDIUM
from gigacanvas.actors.precision import weight_bytes


@pytest.fixture(scope="module")
def large():
    return meta_transformer(SD35_LARGE)


def test_sd35_large_has_8_06_billion_parameters(large):
    assert round(sum(p.numel() for p in large.parameters()) / 1e9, 2) == 8.06


@pytest.mark.parametrize("config", [SD35_LARGE, SD35_MEDIUM], ids=["large", "medium"])
def test_fp8_weights_take_at_most_0_55_of_bf16(config):
    model = meta_transformer(config)
    assert weight_bytes(model, "fp8") <= 0.55 * weight_bytes(model, "bf16")


def test_diffusers_default_patterns_would_miss_the_target(large):
    """The trap the issue measured: skipping every '*norm*' module keeps the adaLN Linears in bf16."""
    import torch
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    patterns = tuple(DEFAULT_SKIP_MODULES_PATTERN) + tuple(large._skip_layerwise_casting_patterns or ())
    kept = sum(
        m.weight.numel() for name, m in large.named_modules()
        if isinstance(m, torch.nn.Linear) and any(re.search(p, name) for p in patterns)
    )
    total = sum(p.numel() for p in large.parameters())
    default_ratio = (total - kept + 2 * kept) / (2 * total)  # kept weights stay at 2 bytes
    assert default_ratio > 0.65
    assert weight_bytes(large, "fp8") / weight_bytes(large, "bf16") < 0.52
