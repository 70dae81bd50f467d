"""Finding, checking and fingerprinting a model before any actor loads it.

Everything that can be wrong with `--model` is caught here, in the driver, from config files alone:
a missing path, a pickle checkpoint (refused: unpickling runs code), a folder of another pipeline,
components without safetensors weights. Actors then load a model that is known to be usable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from gigacanvas.actors.adapter import ModelAdapter, ModelInfo
from gigacanvas.errors import UsageError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
SD3_PIPELINES = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline")
SD3_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
_FINGERPRINT_BYTES = 1 << 20


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
        pass
    return path


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {what} {path} is unreadable ({exc.__class__.__name__})") from exc


def _fingerprint(root: Path) -> str:
    """A content hash of configs and weights that stays cheap for 16 GB checkpoints.

    Configs are hashed whole; each weight file contributes its size, its first and its last MiB
    (the safetensors header with every tensor's name, dtype and offset, plus real weight bytes).
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel.startswith("."):
            continue
        digest.update(rel.encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as fh:
            if file.suffix == ".json" or size <= 2 * _FINGERPRINT_BYTES:
                digest.update(fh.read())
            else:
                digest.update(fh.read(_FINGERPRINT_BYTES))
                fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()[:16]


def _check_sd3_folder(root: Path) -> None:
    index = _read_json(root / "model_index.json", "index")
    cls = index.get("_class_name")
    if cls not in SD3_PIPELINES:
        raise UsageError(
            f"model {root} is a {cls or 'unknown'} folder; gigacanvas supports SD3/SD3.5 "
            f"diffusers folders ({', '.join(SD3_PIPELINES)})"
        )
    for name in SD3_COMPONENTS:
        folder = root / name
        if not (folder / "config.json").exists():
            raise UsageError(f"model {root} has no {name}/config.json; is the download complete?")
        if not any(folder.glob("*.safetensors")):
            pickled = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = f" (it has {pickled[0]}, a pickle file, refused because loading it can run code)"
            raise UsageError(f"model {root} has no safetensors weights in {name}/{hint if pickled else ''}")


def open_model(model: str | None) -> ModelInfo:
    """Check `model` (a diffusers SD3 folder, or None for the tiny model) and describe it."""
    if model is None:
        root = tiny_model_path()
    else:
        root = Path(model).expanduser()
        if root.suffix.lower() in PICKLE_SUFFIXES:
            raise UsageError(
                f"model {model} is a pickle checkpoint ({root.suffix}), refused because loading it "
                "can run code; use a .safetensors file or a diffusers folder"
            )
        if not root.exists():
            raise UsageError(
                f"model {model} does not exist; pass a local diffusers SD3/SD3.5 folder "
                "(hub ids are not downloaded)"
            )
        if root.is_file():
            raise UsageError(
                f"model {model} is a single file; pass a diffusers SD3/SD3.5 folder "
                "(single-file checkpoints are not supported yet)"
            )
        if not (root / "model_index.json").exists():
            raise UsageError(f"model {model} has no model_index.json; it is not a diffusers pipeline folder")
    _check_sd3_folder(root)
    transformer = _read_json(root / "transformer" / "config.json", "config")
    vae = _read_json(root / "vae" / "config.json", "config")
    vae_scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    return ModelInfo(
        family="sd3",
        path=str(root.resolve()),
        fingerprint=_fingerprint(root),
        latent_channels=int(transformer["in_channels"]),
        vae_scale_factor=vae_scale,
        patch_size=int(transformer["patch_size"]),
        native_tile_px=int(transformer["sample_size"]) * vae_scale,
    )


def load_adapter(info: ModelInfo, device: str) -> ModelAdapter:
    """The adapter of `info`'s family (SD3 today; Flux and SDXL register here later)."""
    from gigacanvas.actors.sd3 import SD3Adapter

    adapters = {"sd3": SD3Adapter}
    return adapters[info.family](info, device)
