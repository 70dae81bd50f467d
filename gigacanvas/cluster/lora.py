"""`--lora FILE[:WEIGHT]` entries: parsed, bounded, and recorded as the render's identity.

Pure text handling (no file is opened here; actors/lora.py checks the files against the model).
The weight is the text after the last colon only when that text is a plain number, so a URL
(`s3://bucket/style.safetensors`) or a Windows path (`C:\\loras\\style.safetensors`) is a path
whatever its colons; `C:\\loras\\style.safetensors:0.8` is that path at weight 0.8. A number that is
not finite or lies outside +-MAX_WEIGHT is refused rather than read as part of the path: it is
surely a weight gone wrong, not a file name.

What a render records is `record`'s text: each LoRA's content fingerprint and weight, in the
order given (fusing sums the LoRAs' deltas, but float rounding follows the order, so it is kept).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gigacanvas.errors import UsageError

MAX_WEIGHT = 10.0  # LoRAs are trained for about 1; past a few the picture is noise, past 10 a slip
MAX_LORAS = 16  # bounds what a spec file can make the driver read and every actor fuse
DEFAULT_WEIGHT = 1.0
# a plain decimal number: what the text after the last colon must be to count as the weight
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORDS = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)  # numbers to float(), never a weight
_RECORD = re.compile(r"[0-9a-f]{16}:[^ :]+(?: [0-9a-f]{16}:[^ :]+)*")


@dataclass(frozen=True)
class LoraRef:
    """One `--lora` entry: the file as given (a path or URL) and its weight."""

    path: str
    weight: float = DEFAULT_WEIGHT


def parse_lora(entry: str) -> LoraRef:
    """The file and weight of `FILE[:WEIGHT]` (see the module docstring for when a colon splits)."""
    head, colon, tail = entry.rpartition(":")
    if colon and (_NUMBER.fullmatch(tail) or _WORDS.fullmatch(tail)):
        weight = float(tail)
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            raise UsageError(
                f"lora {_short(entry)} has weight {tail[:20]!r}; a weight must be a finite number from "
                f"{-MAX_WEIGHT:g} to {MAX_WEIGHT:g} (1 applies the LoRA as trained)"
            )
        if not head.strip():
            raise UsageError(f"lora {_short(entry)} names no file; pass --lora FILE[:WEIGHT]")
        return LoraRef(head, weight + 0.0)  # -0.0 is 0
    if not entry.strip():
        raise UsageError("lora '' names no file; pass --lora FILE[:WEIGHT]")
    return LoraRef(entry)


def parse_loras(entries: tuple[str, ...]) -> tuple[LoraRef, ...]:
    return tuple(parse_lora(e) for e in entries)


def record(fingerprints_and_weights: list[tuple[str, float]]) -> str | None:
    """The spec's `lora_fingerprints`: "FINGERPRINT:WEIGHT" for each LoRA, space-separated, the
    weight as Python's shortest repr of the float (1 and 1.0 are one record); None for no LoRA."""
    if not fingerprints_and_weights:
        return None
    return " ".join(f"{fp}:{float(w)!r}" for fp, w in fingerprints_and_weights)


def check_record(text: str) -> None:
    """Refuse a `lora_fingerprints` value (from a picture: anyone's) that `record` cannot have written."""
    if not _RECORD.fullmatch(text) or text.count(" ") >= MAX_LORAS:
        raise UsageError(
            f"lora_fingerprints {_short(text)} is not a LoRA record (FINGERPRINT:WEIGHT, space-separated); "
            "it is written by gigacanvas, never by hand"
        )


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
