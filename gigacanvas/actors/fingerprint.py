"""Content fingerprints of models: every byte hashed, each file's hash cached by its stat.

A store keeps the fingerprint of the model that rendered it and a resume with another model is
refused, so two fine-tunes that differ anywhere (only in their middle blocks, say) must get
different fingerprints: every byte of every file the pipeline loads is hashed (SHA-256, which
runs at 1-2 GB/s where CPUs have SHA instructions). That is most of a minute for SD3.5 Large's
~28 GB, so each file's hash is kept in `fingerprints.json` in the cache folder, keyed by the
file's resolved path, size, mtime (ns) and inode: a rewritten, replaced or touched file is hashed
again, an unchanged one costs a `stat`. The cache is only a shortcut: a missing, damaged,
unwritable or concurrently rewritten cache file means hashing again, never an error.

Hand-written because no library keeps a stat-keyed hash cache for arbitrary files
(huggingface_hub checks its own downloads only); `hashlib.file_digest` does the streaming.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from gigacanvas.errors import UsageError
from gigacanvas.storage.atomic import atomic_path

CACHE_NAME = "fingerprints.json"
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """Where gigacanvas keeps what it can rebuild: GIGACANVAS_CACHE, else ~/.cache/gigacanvas."""
    root = os.environ.get("GIGACANVAS_CACHE") or Path.home() / ".cache" / "gigacanvas"
    return Path(root)


def _hash_file(path: Path) -> str:
    """SHA-256 of the whole file, streamed."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _read_cache(path: Path) -> dict[str, list]:
    """{resolved path: [size, mtime_ns, inode, sha256]}; anything unreadable counts as empty."""
    try:
        data = json.loads(path.read_text())
        files = data["files"] if data.get("version") == _CACHE_VERSION else {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
    if not isinstance(files, dict):
        return {}
    return {
        k: v
        for k, v in files.items()
        if isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) for x in v[:3]) and isinstance(v[3], str)
    }


def _write_cache(path: Path, new: dict[str, list]) -> None:
    """Merge `new` into the cache file (re-read now, so a concurrent writer's entries survive)."""
    files = {k: v for k, v in _read_cache(path).items() if os.path.exists(k)}
    files.update(new)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"version": _CACHE_VERSION, "files": files}))
    except OSError:
        pass  # read-only home, full disk: the next run hashes again, which is only slower


def file_hash(path: Path, cache: dict[str, list], new: dict[str, list]) -> str:
    """`path`'s SHA-256, from `cache` if its stat still matches; fresh hashes go into `new`."""
    real = path.resolve()
    try:
        before = _key(real.stat())
        entry = cache.get(str(real))
        if entry and entry[:3] == before:
            return entry[3]
        digest = _hash_file(real)
        after = _key(real.stat())
    except OSError as exc:
        raise UsageError(f"model file {path} is unreadable ({exc.strerror or exc.__class__.__name__})") from None
    if after == before:  # a file that changed while we read it is not cached
        new[str(real)] = [*before, digest]
    return digest


def cached_file_hash(path: Path) -> str:
    """One file's SHA-256 through the cache (a LoRA's: actors/lora.py), the cache updated if it was hashed."""
    cache_file = cache_dir() / CACHE_NAME
    new: dict[str, list] = {}
    digest = file_hash(path, _read_cache(cache_file), new)
    if new:
        _write_cache(cache_file, new)
    return digest


NOTICE_BYTES = 1 << 30


def _announce(entries: list[tuple[Path, str]], cache: dict[str, list]) -> None:
    """Hashing a big model the first time takes most of a minute: say so, rather than sit silent."""
    todo = 0
    for file, _ in entries:
        try:
            real = file.resolve()
            entry = cache.get(str(real))
            st = real.stat()
        except OSError:
            continue  # file_hash reports it
        if not entry or entry[:3] != _key(st):
            todo += st.st_size
    if todo >= NOTICE_BYTES:
        print(
            f"gigacanvas: fingerprinting {todo / 2**30:.1f} GiB of model files (once; cached in {cache_dir()})",
            file=sys.stderr,
            flush=True,
        )


def fingerprint(root: Path, folders: Iterable[str], transformer_file: Path | None = None, replaced: str = "transformer") -> str:
    """A 16-hex-digit hash of `root`'s model_index.json, every file in `folders`, and
    `transformer_file` (which then stands in for the folder `replaced`: the family's denoiser).

    Only what the pipeline loads counts: a root-level single-file checkpoint or a ComfyUI
    `text_encoders/` folder beside the diffusers layout changes no picture, and is not read.
    Hidden files and folders (`.cache/` of `hf download --local-dir`) are skipped.
    """
    cache_file = cache_dir() / CACHE_NAME
    cache, new = _read_cache(cache_file), {}
    entries = [(root / "model_index.json", "model_index.json")]
    for folder in sorted(set(folders)):
        if transformer_file is not None and folder == replaced:
            continue
        for file in sorted((root / folder).rglob("*")):
            rel = file.relative_to(root)
            if file.is_file() and not any(part.startswith(".") for part in rel.parts):
                entries.append((file, rel.as_posix()))
    if transformer_file is not None:
        entries.append((Path(transformer_file), "transformer-file"))
    _announce(entries, cache)
    digest = hashlib.sha256()
    for file, name in entries:
        digest.update(f"{name}\0{file_hash(file, cache, new)}\n".encode())
    if new:
        _write_cache(cache_file, new)
    return digest.hexdigest()[:16]
