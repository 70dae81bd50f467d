"""`gigacanvas upscale IMAGE`: a user's picture refined at a larger size, as a composed render's last stage.

An upscale is a refinement (cluster/compose.py) whose source is the user's picture instead of a
composition: the picture is upscaled in pixel space tile by tile on the workers (Pillow's
LANCZOS), encoded with the tiled VAE encode, noised to `strength` with the render's own seeded
noise, and denoised by the tiled step loop from the step `strength` gives. The store, the step
loop, resume, status, preview and the output are a render's; the spec records the source as
`source` (storage/source.py's fingerprint of the file's bytes) and `alpha`, so a store or picture
made from other bytes is never taken for this one's, and `gigacanvas resume --store URL` finishes
a stopped upscale (the picture's path is in the store's `local` record; once the initial latent
is written, the store alone suffices).

Decisions, with their reasons:
- The canvas: `--scale S` multiplies the source's sides and rounds each to the nearest multiple
  of `ALIGN_PX` (16: the VAE's factor times the transformer's patch; a tie upwards), so any scale works and the
  aspect ratio moves by less than 8 px a side, which the resampler absorbs; the plan prints the
  canvas. `--width`/`--height` are taken as given and must be multiples (refused with the nearest
  one to pass); one of them alone gets the other from the source's aspect ratio, rounded as
  `--scale` does. A canvas narrower or shorter than a tile is refused: its one tile would be a
  crop of the model's native size, and a smaller --tile-size or a larger --scale is what the
  user meant.
- Alpha: `keep` by default when the source has any, because dropping a user's transparency is
  the silent change the issue forbids; the output is then an RGBA PNG whose alpha is the source's
  upscaled whole by the same resampler as the colour (from the store's `source_alpha`).
  `drop` writes an opaque picture. Either way the model sees the colour composited over white (the
  picture as a viewer shows it): the colour under a transparent pixel is arbitrary. A source
  without transparency records no `alpha` at all (there is nothing to keep or drop). `keep` needs
  a .png output: the TIFF and OME-Zarr outputs carry RGB only.
- `--upscaler FILE`: an upscale model (actors/upscaler.py) upscales the colour crop by crop before
  LANCZOS, as for a composed render's refinements; a kept alpha is upscaled by LANCZOS alone (a
  model for 3 channels has none for a fourth, and an alpha's edges need no invented detail).
- `strength` defaults to the composition's (0.6): an upscale is the same refinement, and tiled
  upscaling workflows use the same 0.3-0.7 range for the same reasons (cluster/compose.py).
"""

from __future__ import annotations

import math
from typing import Any

from gigacanvas.cluster.spec import ALIGN_PX, RenderSpec, _quote
from gigacanvas.errors import UsageError
from gigacanvas.storage.source import SourceInfo, probe_source

MAX_SCALE = 64.0  # far past any sensible upscale; a slip (--scale 400) is one line here


def _aligned(value: float) -> int:
    """`value` px to the nearest multiple of ALIGN_PX (a tie upwards: 200 is 208), at least ALIGN_PX."""
    return max(ALIGN_PX, math.floor(value / ALIGN_PX + 0.5) * ALIGN_PX)


def canvas_size(
    source_w: int, source_h: int, scale: float | None, width: int | None, height: int | None
) -> tuple[int, int]:
    """(width, height) of the upscale's canvas in pixels, as the module docstring decides."""
    if scale is not None:
        if width is not None or height is not None:
            raise UsageError("pass either --scale or --width/--height, not both")
        if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
            raise UsageError(f"scale {_quote(scale)} must be a number above 0 and at most {MAX_SCALE:g}, e.g. 2 or 4")
        return _aligned(source_w * scale), _aligned(source_h * scale)
    if width is None and height is None:
        raise UsageError("pass --scale (e.g. 4) or --width/--height for the upscale's size")
    if height is None:
        return width, _aligned(width * source_h / source_w)
    if width is None:
        return _aligned(height * source_w / source_h), height
    return width, height


def check_canvas(spec: RenderSpec, tile: int) -> None:
    """An upscale's canvas holds at least one whole tile, and its spec knows where its picture is."""
    if spec.image is None:
        raise UsageError(
            f"this spec is an upscale of a picture (source {spec.source[:19]}...) and names no image; "
            "run gigacanvas upscale IMAGE --spec ... with that picture"
        )
    if spec.width < tile or spec.height < tile:
        raise UsageError(
            f"the upscale's canvas {spec.width}x{spec.height} px is smaller than a tile ({tile} px); "
            f"pass a larger --scale, or a --tile-size of at most {min(spec.width, spec.height)}"
        )


def upscale_spec(image: str, scale: float | None, alpha: str | None, spec_file: str | None, **flags: Any) -> RenderSpec:
    """The spec of an upscale of `image` from its flags (render's, but compose) over an optional
    spec file (a YAML file, or a picture: an upscale's of the same source, or a render's as a
    template of prompt and settings); the picture is checked here from its header and bytes, before
    any Ray work, and decoded by the render alone (a dry run holds none of its pixels)."""
    from gigacanvas.cluster.specfile import load_spec_file

    source = probe_source(image)  # the header and a hash: a dry run decodes no pixels (render.py does)
    data = load_spec_file(spec_file) if spec_file else {}
    if data.get("source") not in (None, source.fingerprint):
        raise UsageError(f"spec {spec_file} is the upscale of another picture than {image} (its source differs)")
    data.pop("compose", None)  # a render's picture as a template: an upscale composes nothing
    given = {k: v for k, v in flags.items() if v is not None}
    width, height = given.pop("width", None), given.pop("height", None)
    if scale is None and width is None and height is None and "width" in data and "height" in data:
        width, height = data["width"], data["height"]  # the spec file's canvas
    size = canvas_size(source.width, source.height, scale, width, height)
    if alpha is not None and alpha not in ("keep", "drop"):
        raise UsageError(f"alpha {_quote(alpha)} is not one of keep, drop")
    merged = {"out": "upscaled.png", **data, **given}
    merged.update(image=image, source=source.fingerprint, alpha=_alpha(source, alpha or data.get("alpha")))
    merged.update(width=size[0], height=size[1])
    if "prompt" not in merged:
        raise UsageError("prompt is missing; pass --prompt (what the picture shows) or a spec file with a prompt")
    return RenderSpec(**merged)


def _alpha(source: SourceInfo, asked: str | None) -> str | None:
    """What the spec records: None for an opaque source, else what was asked (keep by default)."""
    if not source.transparent:
        return None
    return asked or "keep"
