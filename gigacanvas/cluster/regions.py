"""The spec's regional prompts: `--region "X,Y,W,H:prompt"`, or in a spec file a list of those
strings or of {x, y, w, h, prompt} mappings; parsed, bounded and checked against the canvas once.

The masks they make are tiling/regions.py's; a worker blends a tile's per-prompt predictions with
them (actors/regional.py). Values may come from a file someone else wrote: the list's length is
checked before it is walked, and a message quotes a few dozen characters at most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gigacanvas.errors import UsageError

MAX_REGIONS = 16  # each distinct prompt is one more model call per tile it touches
DEFAULT_FEATHER_PX = 64  # the soft edge's width: about a VAE cell's receptive field, an eighth of a 512 px tile
MAX_FEATHER_PX = 16_384
MAX_PX = 262_144  # the spec's largest canvas side: a bound before any message quotes a number
SYNTAX = 'X,Y,W,H:prompt in pixels, e.g. "0,0,1024,400:a stormy sky"'
KEYS = ("x", "y", "w", "h", "prompt")


@dataclass(frozen=True)
class Region:
    """A rectangle of the canvas, in pixels from its top-left corner, drawn with its own prompt."""

    x: int
    y: int
    w: int
    h: int
    prompt: str

    def as_tuple(self) -> tuple[int, int, int, int, str]:
        return (self.x, self.y, self.w, self.h, self.prompt)


def parse_regions(value: Any, max_prompt: int) -> tuple[Region, ...]:
    """`regions` as given (a list of strings or mappings, or Regions) as a tuple of Regions; one
    line (UsageError) for anything else. Bounds that need the canvas are `check_regions`'s."""
    from gigacanvas.cluster.spec import _quote

    if value is None:
        return ()
    if isinstance(value, (str, dict)):  # one region where a list was meant
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"regions {_quote(value)} must be a list of regions, each {SYNTAX}")
    if len(value) > MAX_REGIONS:
        raise UsageError(f"regions: {len(value)} given; at most {MAX_REGIONS} are accepted")
    return tuple(_one(item, n, max_prompt) for n, item in enumerate(value, 1))


def _one(item: Any, n: int, max_prompt: int) -> Region:
    from gigacanvas.cluster.spec import _quote

    if isinstance(item, Region):
        fields = item.as_tuple()
    elif isinstance(item, str):
        box, colon, prompt = item.partition(":")
        numbers = box.split(",")
        if not colon or len(numbers) != 4:
            raise UsageError(f"region {n} {_quote(item)} is not {SYNTAX}")
        fields = (*(s.strip() for s in numbers), prompt.strip())
    elif isinstance(item, dict):
        if set(item) != set(KEYS):
            raise UsageError(f"region {n} must have exactly the keys {', '.join(KEYS)} (it has {len(item)} keys)")
        fields = tuple(item[k] for k in KEYS)
    else:
        raise UsageError(f"region {n} {_quote(item)} is not {SYNTAX}, nor a mapping of {', '.join(KEYS)}")
    *numbers, prompt = fields
    ints = []
    for name, number in zip("xywh", numbers):
        if isinstance(number, bool) or not isinstance(number, (int, str)):
            raise UsageError(f"region {n}: {name} {_quote(number)} is not a whole number of pixels")
        try:
            value = int(number)
        except ValueError:  # not a number, or one of more than 4300 digits
            raise UsageError(f"region {n}: {name} {_quote(number)} is not a whole number of pixels; {SYNTAX}") from None
        if abs(value) > MAX_PX:
            raise UsageError(f"region {n}: {name} {_quote(number)} is past any canvas (at most {MAX_PX} px)")
        ints.append(value)
    if not isinstance(prompt, str):
        raise UsageError(f"region {n}'s prompt is a {type(prompt).__name__}, not text; {SYNTAX}")
    if not prompt.strip():
        raise UsageError(f"region {n} has an empty prompt; {SYNTAX}")
    if len(prompt) > max_prompt:
        raise UsageError(f"region {n}'s prompt is {len(prompt)} characters long; at most {max_prompt} are accepted")
    return Region(*ints, prompt.strip())


def check_regions(regions: tuple[Region, ...], width: int, height: int, feather: int | None) -> None:
    """Every region a positive rectangle inside the width x height px canvas; the feather bounded."""
    for n, r in enumerate(regions, 1):
        if r.w < 1 or r.h < 1:
            raise UsageError(f"region {n} is {r.w}x{r.h} px; its width and height must be at least 1")
        if r.x < 0 or r.y < 0 or r.x + r.w > width or r.y + r.h > height:
            raise UsageError(
                f"region {n} ({r.x},{r.y},{r.w},{r.h}) reaches outside the {width}x{height} px canvas; "
                "keep X+W within the width and Y+H within the height"
            )
    if feather is not None:
        from gigacanvas.cluster.spec import _quote

        feather_text = _quote(feather)
        if not regions:
            raise UsageError(f"region_feather {feather_text} has no region to soften; add --region or drop --region-feather")
        if not 0 <= feather <= MAX_FEATHER_PX:
            raise UsageError(f"region_feather {feather_text} must be from 0 to {MAX_FEATHER_PX} px (default {DEFAULT_FEATHER_PX})")


def scale_regions(regions: tuple[Region, ...], width: int, height: int, to_w: int, to_h: int) -> tuple[Region, ...]:
    """`regions` of a width x height canvas on a to_w x to_h one (a composition's stage): edges
    rounded to the nearest pixel, at least 1 px, inside the canvas. The layout is decided at the
    composition, so the regions apply there too, in the same place relative to the picture."""
    out = []
    for r in regions:
        x0, x1 = _span(r.x, r.w, width, to_w)
        y0, y1 = _span(r.y, r.h, height, to_h)
        out.append(Region(x0, y0, x1 - x0, y1 - y0, r.prompt))
    return tuple(out)


def _span(start: int, length: int, size: int, to: int) -> tuple[int, int]:
    a = min(to - 1, round(start * to / size))
    return a, max(a + 1, min(to, round((start + length) * to / size)))


def scale_feather(feather: int | None, width: int, height: int, to_w: int, to_h: int) -> int | None:
    """The feather on the smaller canvas, scaled like the regions (by the mean of the two sides' scales)."""
    return None if feather is None else round(feather * (to_w / width + to_h / height) / 2)


def region_layout(spec: Any, scale: int):
    """(tiling/regions.py's RegionLayout, the distinct prompts) of a resolved spec whose latent is
    `scale` times smaller than its pixels; (None, (prompt,)) without regions."""
    if not spec.regions:
        return None, (spec.prompt,)
    from gigacanvas.tiling.regions import layout

    feather = DEFAULT_FEATHER_PX if spec.region_feather is None else spec.region_feather
    return layout(
        tuple(r.as_tuple() for r in spec.regions), spec.prompt, spec.width, spec.height, scale, feather,
        spec.wrap_y, spec.wrap_x,
    )
