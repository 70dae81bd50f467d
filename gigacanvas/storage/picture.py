"""The output picture: a PNG written atomically, carrying its spec so it can be rendered again.

Text chunks: `gigacanvas` holds the spec as JSON (what `--spec picture.png` reads back) and
`parameters` an A1111-style summary that other tools (and people) already know how to read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gigacanvas.errors import UsageError
from gigacanvas.storage.atomic import atomic_path

SPEC_CHUNK = "gigacanvas"


def write_png(path: str | Path, image: np.ndarray, spec: dict, parameters: str) -> Path:
    """Write (H, W, 3) uint8 `image` to `path` via a temp file and a rename: all or nothing."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    info.add_text(SPEC_CHUNK, json.dumps(spec, sort_keys=True))
    info.add_text("parameters", parameters)
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="RGB").save(tmp, format="PNG", pnginfo=info)
    return path


def read_png_spec(path: str | Path) -> dict:
    """The spec a gigacanvas PNG carries; a PNG without one is a usage error."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, UnidentifiedImageError) as exc:
        raise UsageError(f"spec file {path} is not a readable PNG ({exc.__class__.__name__})") from exc
    if SPEC_CHUNK not in text:
        raise UsageError(f"spec file {path} is a PNG without a gigacanvas spec (no '{SPEC_CHUNK}' text chunk)")
    try:
        return json.loads(text[SPEC_CHUNK])
    except ValueError as exc:
        raise UsageError(f"spec file {path} has a damaged gigacanvas spec chunk") from exc
