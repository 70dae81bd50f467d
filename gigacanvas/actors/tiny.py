"""A tiny random-weight SD3.5-layout pipeline, built offline for the demo and the tests.

No weights can be downloaded here, so the project builds its own: the same folder layout and
component classes as `stabilityai/stable-diffusion-3.5-large` (16 latent channels, VAE scale
factor 8, patch size 2, QK RMS-norm, two CLIP text encoders with projections and a T5 encoder, each
with a real tokenizer), only narrow and shallow. Its pictures are noise; its code paths are the real
ones, so loading, encoding, denoising and decoding are all exercised.

The tokenizers are built by hand because none can be fetched: a byte-level BPE vocabulary for CLIP
(every byte symbol, with and without the end-of-word mark, plus a few merges) and a small Unigram
vocabulary for T5 (a WordLevel T5 tokenizer does not survive a reload in transformers 5).
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path

import torch

TINY_SAMPLE_SIZE = 32  # latent pixels: a native tile of 256 px
CLIP_DIM = 32
T5_DIM = 2 * CLIP_DIM  # SD3 pads the two concatenated CLIP embeddings up to the T5 width


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map that byte-level BPE works on."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in symbols + [s + "</w>" for s in symbols]:
        vocab[token] = len(vocab)
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n</w>"), ("o", "n</w>"), ("o", "f</w>")]
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def build_tiny_pipeline(seed: int = 0):
    """The tiny `StableDiffusion3Pipeline`, weights drawn from `seed` so a rebuild is identical."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer, tokenizer_3 = _clip_tokenizer(), _t5_tokenizer()

    def clip():
        return CLIPTextModelWithProjection(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=CLIP_DIM,
                intermediate_size=2 * CLIP_DIM,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=77,
                projection_dim=CLIP_DIM,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )

    text_encoder, text_encoder_2 = clip(), clip()
    text_encoder_3 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_3),
            d_model=T5_DIM,
            d_kv=16,
            d_ff=2 * T5_DIM,
            num_layers=2,
            num_heads=4,
            pad_token_id=tokenizer_3.pad_token_id,
            eos_token_id=tokenizer_3.eos_token_id,
        )
    )
    transformer = SD3Transformer2DModel(
        sample_size=TINY_SAMPLE_SIZE,
        patch_size=2,
        in_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_DIM,
        out_channels=16,
        pos_embed_max_size=96,
        qk_norm="rms_norm",
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=16,
        sample_size=256,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=_clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def build_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny pipeline as a diffusers folder (safetensors weights) at `path`, all or nothing.

    It is written into a hidden sibling folder and renamed into place, so a failure (a full disk)
    leaves no half-written model that a later run would take for a whole one. `path` may be an
    empty folder (the rename replaces it); a folder with files in it raises OSError (ENOTEMPTY),
    which is how `tiny_model_path` sees that another process built it first. A failed write is an
    OSError naming `path`.
    """
    from gigacanvas.storage.atomic import as_os_error

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}-", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # a plain mkdir's mode, not mkdtemp's owner-only one
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        build_tiny_pipeline(seed).save_pretrained(tmp, safe_serialization=True)
        tmp.rename(path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        named = as_os_error(exc, path)
        if named is not None:
            raise named from exc
        raise
    return path
