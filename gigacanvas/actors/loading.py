"""Finding, checking and fingerprinting a model before any actor loads it.

Everything that can be wrong with `--model` is caught here, in the driver, from configs and
safetensors headers alone: a missing path or unreachable hub id, a pickle checkpoint (refused:
unpickling runs code), a folder of a pipeline no family serves, components without safetensors
weights, a damaged or non-transformer single file, configs diffusers cannot build (see
`configs.py`). Actors then load a model that is known to be usable. What differs between model
families (pipelines, folders, classes, sizes) comes from the family's `Family` (actors/models/),
found by the folder's model_index.json `_class_name`; nothing here names a family.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from gigacanvas.actors import configs, models
from gigacanvas.actors.adapter import ModelAdapter, ModelInfo
from gigacanvas.actors.checkpoint import check_fits, transformer_source
from gigacanvas.actors.configs import read_json
from gigacanvas.actors.fingerprint import cache_dir, fingerprint
from gigacanvas.actors.models import Family
from gigacanvas.errors import UsageError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SINGLE_FILE_SUFFIXES = (".safetensors", ".gguf")  # a transformer file with --base-model (GGUF: ggufmodel.py)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def quiet_libraries() -> None:
    """Keep diffusers/transformers chatter (progress bars, optional-backend notes) off the terminal.

    Must run before they are imported; our own progress bars and one-line notices are the output.
    """
    for name, value in (
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("DIFFUSERS_VERBOSITY", "error"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ):
        os.environ.setdefault(name, value)


def tiny_model_path() -> Path:
    """The built-in tiny model (of the default family), built once per machine (all or nothing:
    see `build_tiny_model`)."""
    path = cache_dir() / f"tiny-{models.DEFAULT}"
    if (path / "model_index.json").exists():
        return path
    from gigacanvas.actors.models.tiny import build_tiny_model

    quiet_libraries()
    try:
        build_tiny_model(path)
    except OSError as exc:
        if (path / "model_index.json").exists():  # another process built it first; theirs is as good
            return path
        raise UsageError(
            f"the built-in tiny model cannot be written to {path} ({exc.strerror or exc}); "
            "set GIGACANVAS_CACHE to a writable folder with 10 MB free"
        ) from None
    return path


def _check_folder(root: Path, need_transformer: bool = True) -> tuple[dict, Family]:
    """The folder's model_index.json and the family its pipeline belongs to, once the family's
    components are there with safetensors weights."""
    index = read_json(root / "model_index.json", "index")
    family = models.for_pipeline(index.get("_class_name"), root)
    for name in family.components:
        if name == family.denoiser and not need_transformer:
            continue
        folder = root / name
        if not (folder / "config.json").exists():
            raise UsageError(f"model {root} has no {name}/config.json; is the download complete?")
        if not any(folder.glob("*.safetensors")):
            pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = f" (it has {pickled[0]}, a pickle file, refused because loading it can run code)"
            raise UsageError(f"model {root} has no safetensors weights in {name}/{hint if pickled else ''}")
    return index, family


def model_fingerprint(root: Path, transformer_file: str | Path | None = None, index: dict | None = None) -> str:
    """The fingerprint `open_model` gives the model at `root` (with `transformer_file`; `index`:
    its model_index.json, if already read)."""
    index = read_json(root / "model_index.json", "index") if index is None else index
    file = Path(transformer_file) if transformer_file else None
    replaced = models.for_pipeline(index.get("_class_name"), root).denoiser if file else "transformer"
    return fingerprint(root, _component_folders(index), file, replaced)


def _component_folders(index: dict) -> list[str]:
    """The folders the pipeline loads: the index's components that are not `[null, null]`."""
    return [
        name
        for name, value in index.items()
        if isinstance(value, list) and value and value[0] and "/" not in name and not name.startswith((".", "_"))
    ]


def _download(repo: str, what: str) -> Path:
    """A hub id's model folder (no root single files), or one clear line on why not."""
    try:
        from huggingface_hub import snapshot_download

        from gigacanvas.actors.nodemodel import MODEL_PATTERNS

        return Path(snapshot_download(repo, allow_patterns=list(MODEL_PATTERNS), etag_timeout=10))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all end the same way
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:  # the local disk, not the hub
            from huggingface_hub.constants import HF_HUB_CACHE

            raise OSError(exc.errno, exc.strerror, exc.filename or HF_HUB_CACHE) from exc
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UsageError(
            f"{what} {repo} is not a local path and could not be fetched from the Hugging Face hub ({detail}); "
            "download it and pass the folder"
        ) from None


def fetches(model: str) -> bool:
    """Whether loading `model` would download it (what `_resolve_folder` fetches): a URL of a place
    other than this machine's disk (`file://`, `local://`), or a hub id that is no local path. A
    picture's spec may not name such a model (cluster/spec.py): it must not make gigacanvas fetch."""
    from gigacanvas.storage.location import LOCAL_PROTOCOLS

    if "://" in model:
        return model.split("://", 1)[0].lower() not in LOCAL_PROTOCOLS
    return bool(HUB_ID.match(model)) and not Path(model).expanduser().exists()


def _resolve_folder(model: str, what: str) -> tuple[Path, tuple[str, str] | None]:
    """A local path for `model`: as given, a URL's copy in this machine's cache, or a hub id's
    download; and for a URL, (URL, cache key) so that every node can fetch the same copy."""
    if Path(model).suffix.lower() in PICKLE_SUFFIXES:
        raise UsageError(
            f"{what} {model} is a pickle checkpoint ({Path(model).suffix}), refused because loading it "
            "can run code; use a .safetensors file or a diffusers folder"
        )
    if "://" in model:
        from gigacanvas.storage.fetch import remote_protocol
        from gigacanvas.storage.location import local_url_path

        if remote_protocol(model):
            from gigacanvas.actors.nodemodel import fetch_model

            path, key = fetch_model(model, what)
            return path, (model, key)
        model = local_url_path(model)
    root = Path(model).expanduser()
    if root.exists():
        return root, None
    if HUB_ID.match(model):
        return _download(model, what), None
    raise UsageError(
        f"{what} {model} does not exist; pass a local diffusers {models.supported()} folder, a hub id or a URL (s3://...)"
    )


def _check_regular_files(root: Path, transformer_file: Path | None) -> None:
    """Every file of the model must be a regular file: opening a FIFO blocks forever (in
    safetensors, in the hash), and a device reads forever; refuse both before anything opens them."""
    import stat

    files = [transformer_file] if transformer_file else []
    files += [p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    for file in files:
        try:
            mode = file.stat().st_mode
        except OSError:
            continue  # a dangling link: the folder checks name what is missing
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise UsageError(f"model file {file} is not a regular file (a FIFO, device or socket); refusing to open it")


def open_model(model: str | None, base_model: str | None = None, scheduler: str | None = None) -> ModelInfo:
    """Check `model` and describe it, reading configs and safetensors headers only.

    `model` is a diffusers folder of a known family, a hub id, None (the tiny model), a single-file
    `.safetensors` or `.gguf` transformer whose VAE, text encoders and configs come from `base_model`, or a
    stand-in named by its prefix (`simulated:...`, for `gigacanvas bench`). `scheduler`: a
    `--scheduler` class name to check against the family (its folder's scheduler is then not used).
    """
    stand_in = models.for_scheme(model) if model is not None else None
    if stand_in is not None:
        if scheduler is not None:
            configs.check_choice(scheduler, stand_in)
        return stand_in.describe(model, base_model)
    from gigacanvas.actors.nodemodel import BUILTIN

    transformer_file, sources = None, []  # sources: (field, URL or BUILTIN, cache key), for the nodes
    if model is None:
        if base_model is not None:
            raise UsageError(f"--base-model {base_model} goes with a single-file --model only; pass --model too, or drop it")
        root = tiny_model_path()
        sources.append(("path", BUILTIN, ""))
    else:
        root, remote = _resolve_folder(model, "model")
        if base_model is not None and not root.is_file():  # silently unused, it would mislead
            raise UsageError(
                f"--base-model {base_model} goes with a single-file --model only; model {model} is a folder "
                "with its own VAE and text encoders: drop --base-model"
            )
        if root.is_file():
            if root.suffix.lower() not in SINGLE_FILE_SUFFIXES:
                raise UsageError(f"model {model} is neither a diffusers folder nor a .safetensors or .gguf file")
            if base_model is None:
                raise UsageError(
                    f"model {model} is a single transformer file; pass --base-model with the {models.supported()} "
                    "diffusers folder (or hub id) that supplies its VAE, text encoders and configs"
                )
            transformer_file = root
            if remote:
                sources.append(("transformer_file", *remote))
            root, remote = _resolve_folder(base_model, "base model")
        if remote:
            sources.append(("path", *remote))
        if not (root / "model_index.json").exists():
            raise UsageError(f"model {root} has no model_index.json; it is not a diffusers pipeline folder")
    _check_regular_files(root, transformer_file)
    index, family = _check_folder(root, need_transformer=transformer_file is None)
    checkpoints, config = transformer_source(root, transformer_file, family)
    quiet_libraries()  # the checks below import diffusers
    source = transformer_file or root / family.denoiser / "config.json"
    transformer = configs.check_transformer(config, str(source), family)
    if checkpoints[0].precision == "gguf":  # diffusers' GGUF loader would not say what is missing
        from gigacanvas.actors.ggufmodel import check_fits as check_gguf_fits

        check_gguf_fits(checkpoints[0], family, config)
    elif transformer_file:  # a file of another model or size: one line now, not on every actor's load
        check_fits(checkpoints[0], transformer)
    vae = configs.check_vae(root, family)
    sizes = family.sizes(transformer, vae)
    configs.check_pair(sizes["latent_channels"], vae, root)
    configs.check_scheduler(root, family, scheduler)
    return ModelInfo(
        family=family.name,
        path=str(root.resolve()),
        # last: the only step that reads every weight byte (once; then cached per file)
        fingerprint=model_fingerprint(root, transformer_file, index),
        sources=tuple(sources),
        transformer_file=str(transformer_file.resolve()) if transformer_file else None,
        weights_precision=checkpoints[0].precision,
        **sizes,
    )


def check_tile_size(info: ModelInfo, tile_px: int) -> None:
    """Refuse a tile side the transformer's positional table cannot cover.

    A transformer that crops a positional table to each input (the family's `sizes` sets
    `max_tile_px`) raises for a larger tile in every actor's first step, after the text encoders
    have already run.
    """
    if info.max_tile_px is not None and tile_px > info.max_tile_px:
        raise UsageError(
            f"tile_size {tile_px} is larger than this model's positional table allows ({info.max_tile_px} px); "
            f"use --tile-size {info.max_tile_px} or less"
        )


def check_weights_precision(info: ModelInfo, mode: str, strict: bool) -> str | None:
    """Refuse (strict) or report a transformer file that is not stored as `mode` asks."""
    source = info.transformer_file or info.path
    # fp8-compute quantises whatever it loads (torchao), so only fp8 storage insists on an FP8 file
    if strict and mode == "fp8" and info.weights_precision != "fp8":
        kind = "E5M2 (float8_e5m2)" if info.weights_precision == "fp8-e5m2" else info.weights_precision
        raise UsageError(
            f"model {source} stores {kind} weights, not float8_e4m3fn, and --strict-precision is set; "
            "make an FP8 file with `gigacanvas convert` or drop --strict-precision"
        )
    if info.weights_precision == "gguf":  # planning refuses fp8 modes; `resolve_precision` keeps auto off them
        return None
    if info.weights_precision == "fp8-e5m2":
        return f"gigacanvas: model {source} stores E5M2 (float8_e5m2) weights; they are upcast exactly, then run as {mode}"
    return None


def load_adapter(info: ModelInfo, device: str, precision: str = "fp32") -> ModelAdapter:
    """The adapter of `info`'s family (its `Family.adapter`, imported now)."""
    return models.family(info.family).adapter_class()(info, device, precision)
