import pytest

from gigacanvas.actors.precision import (
    FP8_SKIP_PATTERNS,
    Capabilities,
    is_fp8_layer,
    resolve_precision,
)
from gigacanvas.errors import UsageError

CPU = Capabilities("cpu", "x86_64")
CPU_BF16 = Capabilities("cpu", "x86_64", cpu_bf16=True)
H100 = Capabilities("cuda", "NVIDIA H100", (9, 0), has_torchao=True)
H100_NO_TORCHAO = Capabilities("cuda", "NVIDIA H100", (9, 0), has_torchao=False)
A100 = Capabilities("cuda", "NVIDIA A100", (8, 0), has_torchao=True)
V100 = Capabilities("cuda", "Tesla V100", (7, 0), has_torchao=True)


@pytest.mark.parametrize(
    "caps, mode", [([CPU], "fp32"), ([CPU_BF16], "bf16"), ([CPU, CPU_BF16], "fp32"), ([H100], "fp8-compute"), ([A100], "bf16"), ([V100], "fp16"), ([H100, A100], "bf16")]
)
def test_auto_is_the_fastest_mode_every_actor_has(caps, mode):
    assert resolve_precision("auto", caps) == (mode, None)


@pytest.mark.parametrize("caps, mode", [([H100], "bf16"), ([V100], "fp16"), ([CPU_BF16], "bf16"), ([CPU], "fp32")])
def test_auto_keeps_already_quantised_weights_off_fp8(caps, mode):
    """A GGUF transformer (fp8=False) computes in a plain dtype; FP8 would quantise it again."""
    assert resolve_precision("auto", caps, fp8=False) == (mode, None)
    with pytest.raises(UsageError, match="does not apply to this model's already quantised weights"):
        resolve_precision("fp8-compute", caps, fp8=False)


@pytest.mark.parametrize(
    "requested, caps, mode, reason",
    [
        ("fp8-compute", [CPU], "fp8", "no CUDA device"),
        ("fp8-compute", [A100], "fp8", "compute capability 8.0) has no FP8 matrix units"),
        ("fp8-compute", [H100_NO_TORCHAO], "fp8", "torchao is not installed"),
        ("fp8-compute", [H100, A100], "fp8", "NVIDIA A100"),
        ("fp8", [Capabilities("cpu", "x", has_float8=False)], "bf16", "no float8_e4m3fn"),
        ("bf16", [V100], "fp32", "has no bf16 support"),
    ],
)
def test_unsupported_modes_fall_back_with_a_reason(requested, caps, mode, reason):
    got, note = resolve_precision(requested, caps)
    assert got == mode
    assert note.startswith(f"gigacanvas: precision {requested} is not available") and reason in note
    assert note.endswith(f"using {mode}") and "\n" not in note
    with pytest.raises(UsageError, match="--strict-precision is set"):
        resolve_precision(requested, caps, strict=True)


@pytest.mark.parametrize("mode", ["fp8", "bf16", "fp16", "fp32"])
def test_supported_modes_run_as_asked_on_cpu(mode):
    assert resolve_precision(mode, [CPU], strict=True) == (mode, None)


def test_fp8_layers_are_the_block_linears_including_adaln_modulation():
    for name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.3.norm1.linear", "transformer_blocks.3.norm1_context.linear", "transformer_blocks.0.ff.net.2"):
        assert is_fp8_layer(name), name
    for name in ("pos_embed.proj", "time_text_embed.timestep_embedder.linear_1", "context_embedder", "norm_out.linear", "proj_out"):
        assert not is_fp8_layer(name), name
    assert "norm" not in FP8_SKIP_PATTERNS  # diffusers' default would keep the adaLN Linears in bf16
