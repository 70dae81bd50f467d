"""GGUF transformers: tiny files written offline with gguf-py, checked at planning from their header,
loaded through diffusers' GGUF support and pinned to diffusers' pipelines on one whole tile.

The files are built as city96's converter builds them: the 2-D weights quantised (Q8_0 with
gguf-py's numpy quantiser), 1-D tensors and the rest in F32, under the original key layout for SD3
(diffusers maps it). gguf-py has no K-quant quantiser (it only dequantises Q2_K..Q6_K), so the
K-quant case writes valid Q4_K blocks directly (fp16 scales, packed 6-bit sub-scales and 4-bit
values: any bytes decode) into the one tiny weight whose rows hold a 256-wide superblock, and
checks that what loads is what gguf-py's reference dequantiser reads. The tiny Flux file is in the
diffusers layout: diffusers' original-layout Flux converter hard-codes Flux.1's width (3072), so
only its header check runs here on original names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gigacanvas.actors.checkpoint import transformer_files
from gigacanvas.actors.ggufmodel import city96_quantises, inspect_gguf, q8_0_bytes
from gigacanvas.actors.loading import load_adapter, open_model
from gigacanvas.actors.models.flux import FAMILY as FLUX
from gigacanvas.actors.models.flux.adapter import unpack
from gigacanvas.actors.models.sd3 import FAMILY as SD3
from gigacanvas.tiling import initial_noise
from tests.actors.test_checkpoint import _to_original
from tests.helpers import run_cli

Q4_K_KEY = "t_embedder.mlp.0.weight"  # SD3's timestep MLP input: 256 wide, one K-quant superblock per row


def write_gguf(path: Path, tensors: dict, arch: str, quantise=None, raw: dict | None = None) -> Path:
    """A GGUF of `tensors`: Q8_0 where `quantise(name, shape)` says so (default: every 2-D weight
    whose rows fill whole blocks), the rest F32; `raw` adds {name: (uint8 blocks, type)} as is."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, tensor in tensors.items():
        if raw and name in raw:
            continue
        array = tensor.float().numpy()
        fits = quantise(name, array.shape) if quantise else array.ndim == 2 and array.shape[-1] % 32 == 0
        kind = gguf.GGMLQuantizationType.Q8_0 if fits else gguf.GGMLQuantizationType.F32
        writer.add_tensor(name, gguf.quants.quantize(array, kind), raw_dtype=kind)
    for name, (blocks, kind) in (raw or {}).items():
        writer.add_tensor(name, blocks, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def q4_k_blocks(rows: int, seed: int = 0) -> np.ndarray:
    """`rows` valid Q4_K superblocks (144 bytes per 256 weights): d, dmin as small fp16 values,
    random sub-scales and 4-bit values."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(rows, 144), dtype=np.uint8)
    blocks[:, 0:2] = np.frombuffer(np.float16(0.002).tobytes(), np.uint8)
    blocks[:, 2:4] = np.frombuffer(np.float16(0.001).tobytes(), np.uint8)
    return blocks


@pytest.fixture(scope="module")
def flux_gguf(tiny_flux_model, tmp_path_factory) -> str:
    """The diffusers layout, quantised by city96's rule (so the byte count can be checked against it)."""
    tensors = load_file(str(transformer_files(Path(tiny_flux_model))[0]))

    def quantise(name, shape):
        return city96_quantises(name, shape, FLUX.gguf_kept)

    return str(write_gguf(tmp_path_factory.mktemp("gguf") / "flux-Q8_0.gguf", tensors, "flux", quantise))


@pytest.fixture(scope="module")
def sd3_gguf(tiny_model, tmp_path_factory) -> str:
    """Original SD3 layout, Q8_0, with a Q4_K timestep weight."""
    import gguf

    original = _to_original(load_file(str(transformer_files(Path(tiny_model))[0])))
    raw = {Q4_K_KEY: (q4_k_blocks(original[Q4_K_KEY].shape[0]), gguf.GGMLQuantizationType.Q4_K)}
    return str(write_gguf(tmp_path_factory.mktemp("gguf") / "sd3-Q8_0.gguf", original, "sd3", raw=raw))


def _fluxpipe_latent(root, transformer, noise, h, w, steps):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(root, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        prompt="a lighthouse", height=h * 8, width=w * 8, num_inference_steps=steps, guidance_scale=3.5,
        latents=pipe._pack_latents(noise, 1, 16, h, w), output_type="latent",
    ).images
    return unpack(out, h, w)


def _adapter_latent(adapter, noise, steps, guidance, negative=""):
    h, w = noise.shape[-2:]
    scheduler = adapter.make_scheduler(steps, h, w)
    cond = adapter.encode_prompt("a lighthouse", negative, guidance)
    x = noise
    for t in scheduler.timesteps:
        v = adapter.predict(x.numpy(), float(t), cond, guidance)
        x = scheduler.step(torch.from_numpy(v), t, x, return_dict=False)[0]
    return x


def test_one_whole_tile_with_a_gguf_flux_transformer_equals_the_pipeline(tiny_flux_model, flux_gguf):
    """The adapter's GGUF transformer stays quantised, and one tile stepped by gigacanvas is
    FluxPipeline's latent with that same GGUF-loaded transformer."""
    from diffusers.quantizers.gguf.utils import GGUFLinear

    info = open_model(flux_gguf, tiny_flux_model)
    assert (info.transformer_file, info.weights_precision) == (str(Path(flux_gguf).resolve()), "gguf")
    assert info.fingerprint != open_model(tiny_flux_model).fingerprint  # the file is the model's identity
    adapter = load_adapter(info, "cpu", "fp32")
    transformer = adapter._load("transformer")
    ff = transformer.transformer_blocks[0].ff.net[0].proj
    assert isinstance(ff, GGUFLinear) and ff.weight.dtype == torch.uint8  # 34 bytes per 32 weights in memory
    h, w, steps = 16, 16, 2
    noise = torch.from_numpy(initial_noise(11, 16, h, w))[None]
    ref = _fluxpipe_latent(tiny_flux_model, transformer, noise, h, w, steps)
    np.testing.assert_allclose(_adapter_latent(adapter, noise, steps, 3.5).numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_an_original_layout_sd3_gguf_with_a_k_quant_equals_the_pipeline(tiny_model, sd3_gguf):
    """SD3's original keys are mapped by diffusers; the Q4_K weight loads as gguf-py dequantises it,
    and one whole tile with classifier-free guidance is StableDiffusion3Pipeline's."""
    import gguf
    from diffusers import StableDiffusion3Pipeline
    from diffusers.quantizers.gguf.utils import dequantize_gguf_tensor

    info = open_model(sd3_gguf, tiny_model)
    assert inspect_gguf(sd3_gguf, SD3).layout == "original"
    adapter = load_adapter(info, "cpu", "fp32")
    transformer = adapter._load("transformer")
    weight = transformer.time_text_embed.timestep_embedder.linear_1.weight
    assert weight.quant_type == gguf.GGMLQuantizationType.Q4_K
    expected = gguf.quants.dequantize(q4_k_blocks(32), gguf.GGMLQuantizationType.Q4_K)
    # diffusers dequantises in fp16 (the blocks' scales are half): equal to fp16 rounding of the products
    np.testing.assert_allclose(dequantize_gguf_tensor(weight).float().numpy(), expected, rtol=0, atol=2**-8 * np.abs(expected).max())

    h, w, steps = 16, 16, 2
    noise = torch.from_numpy(initial_noise(5, 16, h, w))[None]
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_model, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(
        prompt="a lighthouse", negative_prompt="fog", height=h * 8, width=w * 8, num_inference_steps=steps,
        guidance_scale=4.0, latents=noise, output_type="latent",
    ).images
    got = _adapter_latent(adapter, noise, steps, 4.0, negative="fog")
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_bf16_computes_in_bf16_with_the_weights_still_quantised_as_counted(tiny_flux_model, flux_gguf):
    """The benchmark's Q8_0 count (`q8_0_bytes` on the meta device) is what diffusers holds."""
    from diffusers.quantizers.gguf.utils import GGUFLinear

    from gigacanvas.actors.configs import read_json
    from gigacanvas.actors.models.architectures import meta_transformer

    transformer = load_adapter(open_model(flux_gguf, tiny_flux_model), "cpu", "bf16")._load("transformer")
    ff = transformer.single_transformer_blocks[0].proj_mlp
    assert isinstance(ff, GGUFLinear) and ff.compute_dtype == torch.bfloat16 and ff.weight.dtype == torch.uint8
    assert transformer.transformer_blocks[0].attn.norm_q.weight.dtype == torch.bfloat16  # F32 in the file
    tensors = list(transformer.parameters()) + list(transformer.buffers())
    resident = sum(t.numel() * t.element_size() for t in tensors)
    meta = meta_transformer(read_json(Path(tiny_flux_model) / "transformer" / "config.json", "config"))
    counted, quantised = q8_0_bytes(meta, FLUX.gguf_kept, compute_bytes=2)
    assert resident == counted and quantised > sum(t.numel() for t in meta.parameters()) // 2


def test_the_file_is_the_identity_by_content(tiny_flux_model, flux_gguf, tmp_path):
    """A copy elsewhere is the same model (resume finds its store); one changed weight byte is not."""
    import shutil

    copy = Path(shutil.copy(flux_gguf, tmp_path / "copy.gguf"))
    same = open_model(str(copy), tiny_flux_model).fingerprint
    assert same == open_model(flux_gguf, tiny_flux_model).fingerprint
    data = bytearray(copy.read_bytes())
    data[-3] ^= 1  # inside the last tensor's data
    copy.write_bytes(bytes(data))
    assert open_model(str(copy), tiny_flux_model).fingerprint != same


def test_the_header_check_knows_the_original_flux_layout(tmp_path):
    """city96's Flux files: `double_blocks...` keys, architecture flux (header only, no load)."""
    path = write_gguf(tmp_path / "o.gguf", {"double_blocks.0.img_attn.qkv.weight": torch.zeros(96, 32)}, "flux")
    info = inspect_gguf(path, FLUX)
    assert (info.layout, info.precision, info.metadata["gguf_types"]) == ("original", "gguf", "Q8_0")


def test_convert_refuses_a_gguf(tiny_flux_model, flux_gguf, tmp_path):
    from gigacanvas.actors.convert import convert_transformer
    from gigacanvas.errors import UsageError

    with pytest.raises(UsageError, match="is a GGUF file, already quantised; render it as it is"):
        convert_transformer(flux_gguf, str(tmp_path / "t.safetensors"), base_model=tiny_flux_model)
    assert list(tmp_path.iterdir()) == []


def _cli_error(capsys, tmp_path, model, base, *flags) -> str:
    code, _, err = run_cli(
        capsys, "render", "--model", str(model), "--base-model", str(base), "--prompt", "a fox",
        "--out", str(tmp_path / "p.png"), "--dry-run", *flags,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def test_bad_gguf_inputs_are_one_line_each(capsys, tmp_path, tiny_model, tiny_flux_model, tiny_sdxl_model, flux_gguf, sd3_gguf):
    import gguf

    unsupported = write_gguf(
        tmp_path / "q8_1.gguf", {"transformer_blocks.0.attn.to_q.weight": torch.zeros(32, 32)}, "flux",
        raw={"transformer_blocks.0.attn.to_k.weight": (np.zeros((32, 40), np.uint8), gguf.GGMLQuantizationType.Q8_1)},
    )
    assert _cli_error(capsys, tmp_path, unsupported, tiny_flux_model).startswith(
        f"gigacanvas: error: model {unsupported} is a GGUF of an unsupported type (Q8_1, tensor transformer_blocks.0.attn.to_k.weight); "
        "diffusers dequantises BF16, F16, F32, IQ4_NL"
    )
    assert _cli_error(capsys, tmp_path, sd3_gguf, tiny_flux_model) == (
        f"gigacanvas: error: model {sd3_gguf} is a GGUF of another model (its architecture is sd3), not a Flux transformer; "
        "pass a Flux.1 GGUF"
    )
    llm = write_gguf(tmp_path / "llm.gguf", {"blk.0.attn_q.weight": torch.zeros(32, 32)}, "llama")
    assert "is a GGUF of another model (its architecture is llama)" in _cli_error(capsys, tmp_path, llm, tiny_flux_model)
    blocks = load_file(str(transformer_files(Path(tiny_flux_model))[0]))
    short = write_gguf(tmp_path / "short.gguf", {k: v for k, v in blocks.items() if not k.startswith("single_transformer_blocks.1.")}, "flux")
    assert _cli_error(capsys, tmp_path, short, tiny_flux_model).startswith(
        f"gigacanvas: error: model {short.resolve()} does not fit the Flux transformer config of the base model "
        "(missing single_transformer_blocks.1."
    )
    original = _to_original(load_file(str(transformer_files(Path(tiny_model))[0])))
    one_block = write_gguf(tmp_path / "one.gguf", {k: v for k, v in original.items() if not k.startswith("joint_blocks.1.")}, "sd3")
    assert _cli_error(capsys, tmp_path, one_block, tiny_model).startswith(
        f"gigacanvas: error: model {one_block.resolve()} does not fit the SD3 transformer config of the base model (missing "
    )
    data = Path(flux_gguf).read_bytes()
    for name, cut in (("half", len(data) // 2), ("tail", len(data) - 7), ("empty", 0)):
        (tmp_path / f"{name}.gguf").write_bytes(data[:cut])
        line = _cli_error(capsys, tmp_path, tmp_path / f"{name}.gguf", tiny_flux_model)
        assert line.startswith(f"gigacanvas: error: model {tmp_path / f'{name}.gguf'} is not a readable GGUF file ("), line
    assert _cli_error(capsys, tmp_path, flux_gguf, tiny_sdxl_model) == (
        f"gigacanvas: error: model {Path(flux_gguf)} is a GGUF file, which gigacanvas loads for SD3/SD3.5 and Flux.1 only, "
        "not SDXL; use a .safetensors file or a folder"
    )
    assert _cli_error(capsys, tmp_path, flux_gguf, tiny_flux_model, "--precision", "fp8") == (
        f"gigacanvas: error: precision fp8 does not apply to the GGUF model {Path(flux_gguf).resolve()}: its weights stay "
        "quantised and are dequantised to the compute dtype; pass --precision auto, bf16, fp16 or fp32"
    )
