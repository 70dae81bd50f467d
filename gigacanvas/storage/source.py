"""The user's picture that `gigacanvas upscale` starts from: checked, fingerprinted, read.

- Formats: PNG, JPEG, TIFF and WebP (`FORMATS`), 8 bits per channel (`MODES`), one frame.
  Anything else is refused with one line naming what it is, before any Ray work: a 16-bit or
  float picture would be clipped by Pillow's conversion to 8 bits (a silent change of the
  picture), Lab and HSV have no conversion to RGB in Pillow, and an animation or a multi-page
  TIFF has no one picture to upscale.
- Size: Pillow's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`, about 89 megapixels, an
  error past twice that) refuses big pictures that an upscaler is made for. It is lifted here, for
  the open and the decode only, to `MAX_SOURCE_PIXELS`: a 16384 x 16384 picture, the largest PNG
  gigacanvas itself writes (outputs.MAX_PNG_SIDE), so any picture of ours can be upscaled again;
  its RGBA pixels are 1 GiB on the driver. Past it the picture is refused with its size. Pillow
  keeps the limit in a module global with no per-call override, so it is changed under a lock and
  restored at once; another thread opening a picture meanwhile sees our limit, never none.
- Identity: `sha256:` of the file's bytes (`fingerprint`), recorded in the spec as `source`, so
  a store or picture made from other bytes at the same path is never taken for this one's.
- Alpha: a picture with transparency (an alpha band, or a palette or colour key with tRNS) has
  its colour composited over white, the picture as a viewer shows it, for the model to see: the
  colour under a transparent pixel is arbitrary (often black) and would bleed into the upscale's
  edges. Whether the output keeps the alpha (upscaled with the same resampler) is the spec's
  `alpha` (see cluster/upscale.py).
- Orientation: a JPEG's or TIFF's EXIF orientation is applied (`ImageOps.exif_transpose`), so
  the upscale is the picture as every viewer shows it, not as its sensor stored it.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO

import numpy as np

from gigacanvas.errors import UsageError
from gigacanvas.storage.picture import open_picture

FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
MAX_SOURCE_PIXELS = 16384 * 16384  # see the module docstring
MAX_SOURCE_BYTES = 4 << 30  # the file: past an 8-bit RGBA picture of MAX_SOURCE_PIXELS stored raw
# 8-bit modes Pillow converts to RGB(A) without losing anything; others (I;16, I, F) are refused
MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Source:
    """A user's picture as read: (h, w, 3) uint8 colour (over white where transparent) and its
    (h, w) uint8 alpha (None: opaque)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    fingerprint: str
    format: str

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]


@dataclass(frozen=True)
class SourceInfo:
    """What an upscale's spec needs of a picture, from its header and a hash of its bytes: no
    pixels (`probe_source`), so a dry run or a refusal holds nothing picture-sized."""

    width: int  # as a viewer shows it (EXIF orientation applied)
    height: int
    fingerprint: str
    transparent: bool
    format: str


def fingerprint(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHUNK = 1 << 18  # bytes hashed at a time: a 4 GiB file costs under a MiB of memory, not 4 GiB
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the picture a quarter (transposes, rotations)


def probe_source(path: str) -> SourceInfo:
    """The picture at `path` checked as `read_source` checks it, from its header and its bytes
    hashed in chunks: no pixels are decoded (a PNG's chunks are CRC-checked as well, which finds
    a truncated or damaged one); a damaged JPEG, TIFF or WebP is found where `read_source`
    decodes it, before the render writes anything (render.py)."""
    label = f"image {path}"
    with open_picture(path, label) as file:
        try:
            _probe(file, label)
            file.seek(0)
            digest, size = hashlib.sha256(), 0
            while size <= MAX_SOURCE_BYTES and (chunk := file.read(_CHUNK)):
                digest.update(chunk)
                size += len(chunk)
        except OSError as exc:
            raise UsageError(f"{label} is unreadable ({exc.__class__.__name__})") from exc
        if size > MAX_SOURCE_BYTES:
            raise UsageError(f"{label} is over {MAX_SOURCE_BYTES >> 30} GiB; no picture upscale accepts is that large")
        file.seek(0)
        with _opened(file, label) as im:
            width, height = im.size
            # Pillow decodes a PNG to find an eXIf chunk it has not met before the pixels; one
            # after them (rare) is not looked for here, nor its orientation applied to the sides
            exif = im.getexif() if im.format != "PNG" or "exif" in im.info else {}
            if exif.get(0x0112) in _SWAPS_SIDES:
                width, height = height, width
            transparent = _transparent(im)
            kind = im.format
            if kind == "PNG":
                _decoded(label, im.verify)  # CRCs of every chunk, the pixels not inflated
    return SourceInfo(width, height, "sha256:" + digest.hexdigest(), transparent, kind)


def _transparent(im) -> bool:
    return "A" in im.getbands() or im.mode == "PA" or "transparency" in im.info


@contextmanager
def _guard_lifted():
    """Pillow's bomb guard at MAX_SOURCE_PIXELS (a warning past it, an error past twice), for a block."""
    from PIL import Image

    with _LOCK:
        before = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = MAX_SOURCE_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse past the limit ourselves
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def _too_big(label: str, pixels: str) -> UsageError:
    side = int(MAX_SOURCE_PIXELS**0.5)
    return UsageError(
        f"{label} is {pixels} pixels, over the {MAX_SOURCE_PIXELS:,} (a {side}x{side} picture) that upscale "
        "accepts; downscale it first"
    )


def _probe(file, label: str) -> None:
    """The picture's format and size from its header alone (Pillow reads no pixels to open one),
    refused as `read_source` would, so that a file of gigabytes that is no picture upscale reads
    costs a header's read, not its whole bytes in memory."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _guard_lifted():
            with Image.open(file) as im:
                kind = im.format or "unknown"
                if kind not in FORMATS:
                    raise UsageError(f"{label} is a {kind} picture; upscale reads PNG, JPEG, TIFF and WebP")
                if im.width * im.height > MAX_SOURCE_PIXELS:
                    raise _too_big(label, f"{im.width}x{im.height}")
    except Image.DecompressionBombError:
        raise _too_big(label, f"over {2 * MAX_SOURCE_PIXELS:,}") from None
    except UnidentifiedImageError:
        raise UsageError(f"{label} is not a picture upscale can read (damaged, or not PNG, JPEG, TIFF or WebP)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # a damaged header
        raise UsageError(f"{label} is damaged ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def read_source(path: str, expect: str | None = None) -> Source:
    """The picture at `path` (a path or an object-storage URL), checked as the module docstring
    says; `expect`: the fingerprint it must have (a resumed upscale's), else one line."""
    from PIL import Image, ImageOps

    label = f"image {path}"
    with open_picture(path, label) as file:
        try:
            _probe(file, label)  # a film or a disk image passed by mistake is refused before it is read whole
            file.seek(0)
            data = file.read(MAX_SOURCE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{label} is unreadable ({exc.__class__.__name__})") from exc
    if len(data) > MAX_SOURCE_BYTES:
        raise UsageError(f"{label} is over {MAX_SOURCE_BYTES >> 30} GiB; no picture upscale accepts is that large")
    found = fingerprint(data)
    if expect is not None and found != expect:
        raise UsageError(
            f"{label} is not the picture this upscale started from (its bytes changed: {found[:19]}..., "
            f"recorded {expect[:19]}...); put the original back, or start a new upscale with --overwrite"
        )
    with _opened(BytesIO(data), label) as im:
        def pixels() -> tuple[np.ndarray, np.ndarray | None]:
            im.load()
            oriented = ImageOps.exif_transpose(im)
            if not _transparent(oriented):
                return np.asarray(oriented.convert("RGB"), dtype=np.uint8).copy(), None
            rgba = oriented.convert("RGBA")
            alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint8).copy()
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8).copy(), alpha

        rgb, alpha = _decoded(label, pixels)
        kind = im.format
    return Source(rgb, alpha, found, kind)


@contextmanager
def _opened(file, label: str):
    """The picture in `file`, opened (header only) under the lifted bomb guard and refused as the
    module docstring says: format, size, frames, mode; one line for anything unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _guard_lifted():
            with Image.open(file) as im:
                kind = im.format or "unknown"
                if kind not in FORMATS:
                    raise UsageError(f"{label} is a {kind} picture; upscale reads PNG, JPEG, TIFF and WebP")
                if im.width * im.height > MAX_SOURCE_PIXELS:
                    raise _too_big(label, f"{im.width}x{im.height}")
                if getattr(im, "n_frames", 1) > 1:
                    raise UsageError(f"{label} has {im.n_frames} frames (an animation or pages); upscale takes a single picture")
                if im.mode not in MODES:
                    raise UsageError(
                        f"{label} has mode {im.mode}; upscale reads 8-bit grey, palette, RGB(A), CMYK or YCbCr "
                        "pictures (not 16-bit, floating point or Lab): convert it first"
                    )
                yield im
    except UsageError:
        raise
    except Image.DecompressionBombError:
        raise _too_big(label, f"over {2 * MAX_SOURCE_PIXELS:,}") from None
    except UnidentifiedImageError:
        raise UsageError(f"{label} is not a picture upscale can read (damaged, or not PNG, JPEG, TIFF or WebP)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # a damaged header
        raise UsageError(f"{label} is damaged ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def _decoded(label: str, work):
    """`work()`, with truncated or damaged pixels (or no memory to decode them) as one line."""
    from PIL import Image

    try:
        return work()  # inside `_opened`, whose guard is lifted (its lock is not re-entrant)
    except Image.DecompressionBombError:
        raise _too_big(label, f"over {2 * MAX_SOURCE_PIXELS:,}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:  # truncated or damaged pixels
        raise UsageError(f"{label} is damaged ({exc.__class__.__name__}: {str(exc)[:80]})") from None
