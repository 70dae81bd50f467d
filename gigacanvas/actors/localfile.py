"""A weights file the user names by path (a LoRA, an upscale model): local, regular, no pickle.

One set of checks for every such file, each failing in one line: a path or a `file://` /
`local://` URL, never a remote URL (these are read on every node from the same path, and
gigacanvas does not fetch them); never a pickle (`.pth`, `.ckpt`, ...: loading one can run code);
a regular file, not a folder, FIFO or device (opening a FIFO blocks forever).
"""

from __future__ import annotations

import stat
from pathlib import Path

from gigacanvas.errors import UsageError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")  # as loading.py's


def local_weights_file(given: str, what: str, kinds: str, wanted: str, pickle_advice: str) -> Path:
    """`given` resolved to a local regular file, or a UsageError line: `what` names the flag
    ('lora'), `kinds` what such files are ('LoRAs'), `wanted` what to pass instead ('a .safetensors
    LoRA file') and `pickle_advice` what to do with a pickle."""
    from gigacanvas.storage.location import local_url_path

    if not given.strip():
        raise UsageError(f"{what} is empty; pass {wanted}")
    text = local_url_path(given) if "://" in given else given
    if "://" in text:
        raise UsageError(f"{what} {given}: {kinds} are read from local files only; download it and pass its path")
    path = Path(text).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UsageError(
            f"{what} {given} is a pickle file ({path.suffix}), refused because loading it can run code; {pickle_advice}"
        )
    try:
        mode = path.stat().st_mode
    except OSError:
        raise UsageError(f"{what} {given} does not exist; pass {wanted}") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{what} {given} is not a regular file (a folder, FIFO or device); pass {wanted}")
    return path.resolve()
