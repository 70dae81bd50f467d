"""The built-in tiny random-weight models: written offline, all or nothing, and their tokenizers.

No weights can be downloaded here, so the project builds its own: each family's home gives a tiny
pipeline (`Family.tiny_pipeline`: the real layout and component classes, only narrow and shallow)
and this module writes it as a diffusers folder. Their pictures are noise; their code paths are
the real ones, so loading, encoding, denoising and decoding are all exercised.

The tokenizers are built by hand because none can be fetched, and the text encoders of several
families share them: a byte-level BPE vocabulary for CLIP (every byte symbol, with and without the
end-of-word mark, plus a few merges) and a small Unigram vocabulary for T5 (a WordLevel T5
tokenizer does not survive a reload in transformers 5).
"""

from __future__ import annotations

import os
import shutil
import string
import tempfile
from pathlib import Path

from gigacanvas.actors.models import DEFAULT, family, load


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


def clip_tokenizer():
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


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    pieces += [("▁" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def build_tiny_model(path: str | Path, seed: int = 0, name: str = DEFAULT) -> Path:
    """Write family `name`'s tiny pipeline as a diffusers folder (safetensors weights) at `path`,
    all or nothing.

    It is written into a hidden sibling folder and renamed into place, so a failure (a full disk)
    leaves no half-written model that a later run would take for a whole one. `path` may be an
    empty folder (the rename replaces it); a folder with files in it raises OSError (ENOTEMPTY),
    which is how `tiny_model_path` sees that another process built it first. A failed write is an
    OSError naming `path`.
    """
    from gigacanvas.storage.atomic import as_os_error

    build = load(family(name).tiny_pipeline)
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
        build(seed).save_pretrained(tmp, safe_serialization=True)
        tmp.rename(path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        named = as_os_error(exc, path)
        if named is not None:
            raise named from exc
        raise
    return path
