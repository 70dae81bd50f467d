"""The model as one node sees it: fetched from its URL, built, or at the driver's path; then proven.

The driver plans with its own copy (`loading.open_model`); an actor may run on a node that shares
no disk with it. `localize` gives the actor its node's copy and refuses, in one line naming the
node, a model the node cannot read or whose bytes differ from the plan's (its fingerprint):

- a URL (`s3://`, `gs://`, ...) is fetched into this node's cache once (storage/fetch.py), under the
  key the driver's listing gave, so a node that already has it (the driver's own, where actors
  share its node) touches no network. Credentials are each node's own (AWS_* variables, ~/.aws, an
  instance profile), as for a store on object storage: the driver's are never shipped to the
  actors, which would put secrets into Ray's job metadata and override the nodes' own roles;
- the built-in tiny model is built on the node (it is the same bytes from its seed);
- a path must be there on every node: otherwise "put it on every node, or pass a URL".

The cache is `GIGACANVAS_MODEL_CACHE`, else `models/` in gigacanvas's cache (`GIGACANVAS_CACHE`,
else ~/.cache/gigacanvas). Every copy is then fingerprinted (every byte, once per file thanks to
the stat-keyed cache in fingerprint.py) and compared with the driver's fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from gigacanvas.actors import models
from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.errors import GigacanvasError, UsageError

BUILTIN = f"builtin:tiny-{models.DEFAULT}"
# What a model folder URL's fetch and a hub id's download copy: the files the pipeline loads.
MODEL_PATTERNS = ("model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model")


def model_cache_dir() -> Path:
    """Where fetched models go on this machine: GIGACANVAS_MODEL_CACHE, else CACHE/models."""
    from gigacanvas.actors.fingerprint import cache_dir

    return Path(os.environ.get("GIGACANVAS_MODEL_CACHE") or cache_dir() / "models").expanduser()


def _check_listing(what: str, url: str):
    def check(listing) -> None:
        if listing.single and not url.lower().endswith((".safetensors", ".gguf")):
            raise UsageError(f"{what} {url} is neither a diffusers folder nor a .safetensors or .gguf file")
        if not listing.single and "model_index.json" not in listing.files:
            raise UsageError(f"{what} {url} has no model_index.json; it is not a diffusers pipeline folder")

    return check


def fetch_model(url: str, what: str = "model", key: str | None = None) -> tuple[Path, str]:
    """This machine's copy of the model at `url` (a folder, or a file inside its cache entry) and its
    cache key; see storage/fetch.py for the all-or-nothing download and the lock."""
    from gigacanvas.storage.fetch import fetch

    return fetch(url, model_cache_dir(), MODEL_PATTERNS, key=key, check=_check_listing(what, url), what=what)


def localize(info: ModelInfo, node: str = "this machine") -> ModelInfo:
    """`info` with this node's paths, once its copy is known to be the planned model.

    `node` names the node in errors ("node 10.0.0.7 (node id 3f2a...)").
    """
    if models.family(info.family).scheme:  # a stand-in (`simulated:...`): no files to get or prove
        return info
    changes = {}
    try:
        for field, source, key in info.sources:
            if source == BUILTIN:
                from gigacanvas.actors.loading import tiny_model_path

                changes[field] = str(tiny_model_path())
            else:
                changes[field] = str(fetch_model(source, key=key)[0])
    except GigacanvasError as exc:
        raise type(exc)(f"on {node}: {exc}") from None
    except OSError as exc:  # the node's cache disk: full, read-only
        raise UsageError(
            f"model cache {exc.filename or model_cache_dir()} on {node}: {exc.strerror or exc}; "
            "free space or set GIGACANVAS_MODEL_CACHE to a writable folder"
        ) from None
    here = replace(info, **changes)
    fetched = {field for field, source, _ in info.sources if source != BUILTIN}
    for field in ("path", "transformer_file"):
        path = getattr(here, field)
        if path is not None and field not in fetched and not _readable(Path(path)):
            raise UsageError(
                f"model {path} is not readable on {node}; put it on every node at the same path, "
                "or pass an s3:// (or other fsspec) URL"
            )
    _check_fingerprint(here, info.fingerprint, node)
    return here


def _readable(path: Path) -> bool:
    return os.access(path, os.R_OK) and (path.is_file() or (path / "model_index.json").is_file())


@contextmanager
def _one_per_node(name: str) -> Iterator[None]:
    """Hold a lock of this machine named `name`: the actors of a node hash a model one after the
    other, so only the first reads every byte and the others find its hashes in the stat cache.
    Without a writable cache folder, no lock: each actor hashes, which is only slower."""
    from filelock import FileLock

    from gigacanvas.actors.fingerprint import cache_dir

    lock = FileLock(str(cache_dir() / "locks" / f"{name}.lock"))
    try:
        (cache_dir() / "locks").mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError:
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _check_fingerprint(here: ModelInfo, planned: str, node: str) -> None:
    from gigacanvas.actors.loading import model_fingerprint

    name = hashlib.sha256(f"{here.path}\0{here.transformer_file}".encode()).hexdigest()[:16]
    try:
        with _one_per_node(f"fingerprint-{name}"):
            found = model_fingerprint(Path(here.path), here.transformer_file)
    except UsageError as exc:  # a file the driver read is unreadable here
        raise UsageError(f"on {node}: {exc}; put the model on every node at the same path, or pass an s3:// URL") from None
    if found != planned:
        urls = [source for _, source, _ in here.sources if source != BUILTIN]
        copies = [getattr(here, field) for field, source, _ in here.sources if source != BUILTIN]
        raise UsageError(
            f"model {', '.join(urls) or here.path} on {node} is not the model the render was planned with "
            f"(fingerprint {found}, planned {planned}); put the same files on every node"
            + (f", or remove the cached copy {', '.join(copies)} if it is damaged" if copies else "")
        )
