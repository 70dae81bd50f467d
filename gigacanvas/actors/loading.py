"""Finding, checking and fingerprinting a model before any actor loads it.

Everything that can be wrong with `--model` is caught here, in the driver, from configs and
safetensors headers alone: a missing path or unreachable hub id, a pickle checkpoint (refused:
unpickling runs code), a folder of another pipeline, components without safetensors weights, a
damaged or non-transformer single file. Actors then load a model that is known to be usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from gigacanvas.actors.adapter import ModelAdapter, ModelInfo
from gigacanvas.errors import UsageError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SD3_PIPELINES = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline")
SD3_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
_FINGERPRINT_BYTES = 1 << 20
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


def _cache_dir() -> Path:
    root = os.environ.get("GIGACANVAS_CACHE") or Path.home() / ".cache" / "gigacanvas"
    return Path(root)


def tiny_model_path() -> Path:
    """The built-in tiny model, built once per machine (into a temp folder, then renamed)."""
    path = _cache_dir() / "tiny-sd3"
    if (path / "model_index.json").exists():
        return path
    from gigacanvas.actors.tiny import build_tiny_model

    quiet_libraries()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-sd3-", dir=path.parent))
    build_tiny_model(tmp)
    try:
        tmp.rename(path)
    except OSError:  # another process built it first; theirs is as good as ours
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {what} {path} is unreadable ({exc.__class__.__name__})") from exc


def _digest_file(digest, file: Path) -> None:
    size = file.stat().st_size
    digest.update(str(size).encode())
    with file.open("rb") as fh:
        if file.suffix == ".json" or size <= 2 * _FINGERPRINT_BYTES:
            digest.update(fh.read())
        else:
            digest.update(fh.read(_FINGERPRINT_BYTES))
            fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
            digest.update(fh.read())


def _fingerprint(root: Path, transformer_file: Path | None = None) -> str:
    """A content hash of configs and weights that stays cheap for 16 GB checkpoints.

    Configs are hashed whole; each weight file contributes its size, its first and its last MiB
    (the safetensors header with every tensor's name, dtype and offset, plus real weight bytes).
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.startswith(".") or (transformer_file and rel.startswith("transformer/")):
            continue
        digest.update(rel.encode())
        _digest_file(digest, file)
    if transformer_file:
        digest.update(b"transformer-file")
        _digest_file(digest, transformer_file)
    return digest.hexdigest()[:16]


def _check_sd3_folder(root: Path, need_transformer: bool = True) -> None:
    index = _read_json(root / "model_index.json", "index")
    cls = index.get("_class_name")
    if cls not in SD3_PIPELINES:
        raise UsageError(
            f"model {root} is a {cls or 'unknown'} folder; gigacanvas supports SD3/SD3.5 "
            f"diffusers folders ({', '.join(SD3_PIPELINES)})"
        )
    for name in SD3_COMPONENTS:
        if name == "transformer" and not need_transformer:
            continue
        folder = root / name
        if not (folder / "config.json").exists():
            raise UsageError(f"model {root} has no {name}/config.json; is the download complete?")
        if not any(folder.glob("*.safetensors")):
            pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = f" (it has {pickled[0]}, a pickle file, refused because loading it can run code)"
            raise UsageError(f"model {root} has no safetensors weights in {name}/{hint if pickled else ''}")


def transformer_files(root: Path) -> list[Path]:
    """The folder's transformer shards, preferring full files over `.fp16.`-style variants."""
    files = sorted((root / "transformer").glob("*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1]
    return plain or files


def transformer_source(root: Path, transformer_file: str | Path | None = None):
    """(checkpoints, config) of the transformer: the single file if given, else the folder's shards.

    A file written by `convert` carries its own config; otherwise the folder's config applies.
    """
    from gigacanvas.actors.checkpoint import inspect_checkpoint

    sources = [transformer_file] if transformer_file else transformer_files(root)
    checkpoints = [inspect_checkpoint(s) for s in sources]
    config = checkpoints[0].config or _read_json(root / "transformer" / "config.json", "config")
    return checkpoints, config


def _download(repo: str, what: str) -> Path:
    """A hub id's SD3 folder (no root single files), or one clear line on why not."""
    try:
        from huggingface_hub import snapshot_download

        patterns = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model"]
        return Path(snapshot_download(repo, allow_patterns=patterns, etag_timeout=10))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all end the same way
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise UsageError(
            f"{what} {repo} is not a local path and could not be fetched from the Hugging Face hub ({detail}); "
            "download it and pass the folder"
        ) from None


def _resolve_folder(model: str, what: str) -> Path:
    """A local path for `model`: as given, or a hub id's download."""
    root = Path(model).expanduser()
    if root.suffix.lower() in PICKLE_SUFFIXES:
        raise UsageError(
            f"{what} {model} is a pickle checkpoint ({root.suffix}), refused because loading it "
            "can run code; use a .safetensors file or a diffusers folder"
        )
    if root.exists():
        return root
    if HUB_ID.match(model):
        return _download(model, what)
    raise UsageError(f"{what} {model} does not exist; pass a local diffusers SD3/SD3.5 folder or a hub id")


def open_model(model: str | None, base_model: str | None = None) -> ModelInfo:
    """Check `model` and describe it, reading configs and safetensors headers only.

    `model` is a diffusers SD3/SD3.5 folder, a hub id, None (the tiny model), or a single-file
    `.safetensors` transformer whose VAE, text encoders and configs come from `base_model`.
    """
    transformer_file = None
    if model is None:
        root = tiny_model_path()
    else:
        root = _resolve_folder(model, "model")
        if root.is_file():
            if root.suffix.lower() != ".safetensors":
                raise UsageError(f"model {model} is neither a diffusers folder nor a .safetensors file")
            if base_model is None:
                raise UsageError(
                    f"model {model} is a single transformer file; pass --base-model with the SD3/SD3.5 "
                    "diffusers folder (or hub id) that supplies its VAE, text encoders and configs"
                )
            transformer_file = root
            root = _resolve_folder(base_model, "base model")
        if not (root / "model_index.json").exists():
            raise UsageError(f"model {root} has no model_index.json; it is not a diffusers pipeline folder")
    _check_sd3_folder(root, need_transformer=transformer_file is None)
    checkpoints, transformer = transformer_source(root, transformer_file)
    vae = _read_json(root / "vae" / "config.json", "config")
    vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    return ModelInfo(
        family="sd3",
        path=str(root.resolve()),
        fingerprint=_fingerprint(root, transformer_file),
        latent_channels=int(transformer["in_channels"]),
        vae_scale_factor=vae_scale,
        patch_size=int(transformer["patch_size"]),
        native_tile_px=int(transformer["sample_size"]) * vae_scale,
        transformer_file=str(transformer_file.resolve()) if transformer_file else None,
        weights_precision=checkpoints[0].precision,
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
    if info.weights_precision == "fp8-e5m2":
        return f"gigacanvas: model {source} stores E5M2 (float8_e5m2) weights; they are upcast exactly, then run as {mode}"
    return None


def load_adapter(info: ModelInfo, device: str, precision: str = "fp32") -> ModelAdapter:
    """The adapter of `info`'s family (SD3 today; Flux and SDXL register here later)."""
    from gigacanvas.actors.sd3 import SD3Adapter

    adapters = {"sd3": SD3Adapter}
    return adapters[info.family](info, device, precision)
