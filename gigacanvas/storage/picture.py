"""The output picture: a PNG written atomically, carrying its spec so it can be rendered again.

The picture goes to a path or to any fsspec URL (`s3://bucket/poster.png`, so a Ray job's picture
does not stay inside a pod); a `file://` URL is a path.

Text chunks: `gigacanvas` holds the spec as JSON (what `--spec picture.png` reads back) and
`parameters` an A1111-style summary that other tools (and people) already know how to read.
Both come before the pixels (IDAT). The pixels are streamed band by band (pngstream.py), so a
16K picture is never held whole; PNG is refused above `outputs.MAX_PNG_SIDE` (outputs.py says why).

Reading the spec back is hand-written: a bounded walk over the PNG chunk stream (signature, then
length, type, data, CRC) that stops at the first IDAT or IEND and never touches pixels. Pillow's
`Image.open` refuses any picture over ~179 megapixels as a decompression bomb (it checks the size
in the header, with no per-call opt-out), and our own 16K pictures are larger than that; lifting the
limit means changing the process-wide `Image.MAX_IMAGE_PIXELS`, which would disarm the check for
every other caller and thread. The walk reads the first 11 bytes (room for our keyword) of each
text chunk and skips every other chunk unread, holds at most 1 MiB of our own chunk (inflated with
a length cap, for zTXt/iTXt), and looks at no more than 1024 chunks. A spec after the pixels is
not looked for: gigacanvas never writes one there.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.atomic import atomic_path
from gigacanvas.storage.location import Location, first_line, is_url
from gigacanvas.storage.pngstream import PNG_SIGNATURE, PngStream

SPEC_CHUNK = "gigacanvas"
MAX_SPEC_CHUNK = 1 << 20  # bytes, stored or inflated; a spec is a few hundred
MAX_CHUNKS = 1024  # chunks before the pixels; real pictures have a dozen
_KEYWORD = SPEC_CHUNK.encode("latin-1") + b"\0"  # a text chunk starts with its keyword and a NUL
_FILE_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def local_path(out: str | Path) -> Path | None:
    """The picture's path on this machine (a path, or a file:// URL); None for object storage."""
    if not is_url(str(out)):
        return Path(out)
    location = Location(str(out), what="out")
    return Path(location.root) if location.local else None


def check_picture_url(url: str) -> bool:
    """Whether a picture already is at object-storage `url`; refused first if gigacanvas could not
    write there (unknown protocol, memory://, no credentials, no bucket)."""
    location = Location(url, what="out")
    if location.protocol == "memory":
        raise UsageError(f"out {url} would vanish with this process (memory://); pass a path or an object-storage URL")
    bucket = location.root.split("/", 1)[0]  # object stores have no folders to check, only the bucket
    try:
        if not location.fs.exists(bucket):
            raise UsageError(f"out {url}: bucket {bucket} does not exist (or these credentials cannot see it)")
        if location.fs.isdir(location.root):
            raise UsageError(f"out {url} is a folder (objects under {url}/), not a file; name a file inside it")
        return bool(location.fs.exists(location.root))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's NoCredentialsError, a refused connection, ...
        raise UsageError(f"out {url} cannot be reached ({exc.__class__.__name__}: {first_line(exc)})") from exc


def write_png(path: str | Path, image: np.ndarray, spec: dict, parameters: str) -> str | Path:
    """Write (H, W, 3) uint8 `image` to `path` all or nothing (see `write_png_bands`)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"a picture is (H, W, 3) uint8, not {image.shape} {image.dtype}")
    return write_png_bands(path, image.shape[1], image.shape[0], [image], spec, parameters)


def write_png_bands(
    path: str | Path, width: int, height: int, bands: Iterable[np.ndarray], spec: dict, parameters: str | None,
    keyword: str = SPEC_CHUNK, channels: int = 3,
) -> str | Path:
    """A PNG of `bands`, (n, W, channels) uint8 rows from the top (RGB, or RGBA), streamed (pngstream.py): no more than
    one band is held. All or nothing: on a disk a temp file and a rename; on object storage a temp
    file here, then one upload, which is whole or absent (a multipart upload appears only when it
    completes), so a reader never sees half a picture."""
    texts = [(keyword, json.dumps(spec, sort_keys=True))] + ([("parameters", parameters)] if parameters is not None else [])

    def encode(target: Path) -> None:
        with open(target, "wb") as file:
            stream = PngStream(file, width, height, texts, channels=channels)
            for band in bands:
                stream.write(band)
            stream.close()

    return write_file(path, encode)


def write_file(path: str | Path, encode: Callable[[Path], None]) -> str | Path:
    """`encode(tmp)` writes a whole file at the local path `tmp`; it then becomes `path`, all or nothing.

    A local `path` gets a temp file beside it and a rename (atomic.py); an object-storage `path`
    one upload of a finished temp file, streamed from disk (a 16K picture is never in memory)."""
    here = local_path(path)
    if here is not None:
        with atomic_path(here) as tmp:
            encode(tmp)
        return here
    location = Location(str(path), what="out")
    with tempfile.TemporaryDirectory(prefix="gigacanvas-out-") as folder:
        tmp = Path(folder) / Path(location.root).name
        encode(tmp)
        try:
            location.fs.put_file(str(tmp), location.root)
        except Exception as exc:  # noqa: BLE001 - the store keeps the picture: say where, and how to get it
            raise RenderError(
                f"out {path} could not be written ({exc.__class__.__name__}: {first_line(exc)}); the store "
                "holds the finished picture: `gigacanvas resume --store URL --out PATH` writes it again"
            ) from exc
    return str(path)


def open_picture(path: str | Path, label: str) -> BinaryIO:
    """A picture opened for reading: a regular local file, or an object on object storage; a
    missing, unreachable or odd one is a usage error naming `label`."""
    here = local_path(path)
    if here is not None:
        return open_regular(here, label)
    location = Location(str(path), what="picture")
    try:
        return location.fs.open(location.root, "rb")
    except Exception as exc:  # noqa: BLE001 - missing, no credentials, unreachable
        raise UsageError(f"{label} is unreadable ({exc.__class__.__name__})") from exc


def read_png_spec(path: str | Path, keyword: str = SPEC_CHUNK) -> dict:
    """The spec a gigacanvas PNG carries, read without decoding (or even sizing) its pixels.

    A PNG without one, a damaged or oversized one, or one that is not a JSON mapping is a usage
    error; the values are the caller's to check. `path` may be an object-storage URL. `keyword`
    names another JSON chunk of ours (a preview's, `gigacanvas-preview`).
    """
    label = f"picture {path}"
    with open_picture(path, label) as file:
        try:
            text = _spec_text(file, label, keyword.encode("latin-1") + b"\0")
        except OSError as exc:
            raise UsageError(f"{label} is not a readable PNG ({exc.__class__.__name__})") from exc
    if text is None:
        raise UsageError(f"{label} is a PNG without a gigacanvas spec (no '{keyword}' text chunk before its pixels)")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a chunk of 100 000 nested brackets
        raise UsageError(f"{label} has a damaged gigacanvas spec chunk") from None
    if not isinstance(data, dict):
        kind = {list: "a list", type(None): "null", str: "text"}.get(type(data), "a number")
        raise UsageError(f"{label} has a gigacanvas spec that is not a mapping of keys to values ({kind})")
    return data


def open_regular(path: str | Path, label: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file; anything else is refused before it is read.

    A FIFO with no writer blocks `open` forever and /dev/zero never ends, so the type is checked
    with `stat` before opening (opening some devices has effects) and again on the open file,
    which is opened non-blocking so that a FIFO swapped in between cannot hang us either.
    """
    try:
        _check_regular(os.stat(path).st_mode, path, label)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise UsageError(f"{label} is unreadable ({exc.__class__.__name__})") from exc
    try:
        _check_regular(os.fstat(fd).st_mode, path, label)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_regular(mode: int, path: str | Path, label: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS.items() if test(mode)), "a special file")
        raise UsageError(f"{label} is not a regular file but {kind}")


def _spec_text(file: BinaryIO, label: str, keyword: bytes = _KEYWORD) -> str | None:
    """The text of the `keyword` chunk (ours: `gigacanvas`) before the first IDAT, or None; reads
    only what it needs."""
    if file.read(8) != PNG_SIGNATURE:
        raise UsageError(f"{label} is not a readable PNG (no PNG signature)")
    found = None
    for _ in range(MAX_CHUNKS):
        head = file.read(8)
        if len(head) < 8:
            raise UsageError(f"{label} is not a readable PNG (it ends before its pixels)")
        length, kind = struct.unpack(">I4s", head)
        if length > 2**31 - 1:  # the PNG limit; anything larger is not a chunk length
            raise UsageError(f"{label} is not a readable PNG (damaged chunk)")
        if kind in (b"IDAT", b"IEND"):
            return found
        start = file.read(min(length, len(keyword))) if kind in (b"tEXt", b"zTXt", b"iTXt") else b""
        if start != keyword:
            file.seek(length - len(start) + 4, os.SEEK_CUR)  # the rest of the chunk and its CRC
            continue
        if found is not None:
            raise UsageError(f"{label} has two gigacanvas spec chunks; it is not one gigacanvas wrote")
        if length > MAX_SPEC_CHUNK:
            raise UsageError(f"{label} has a gigacanvas spec chunk over 1 MiB; a spec is a few hundred bytes")
        body = file.read(length - len(start))
        crc = file.read(4)
        if len(body) != length - len(start) or crc != struct.pack(">I", zlib.crc32(kind + start + body)):
            raise UsageError(f"{label} has a damaged gigacanvas spec chunk")
        found = _decode(kind, body, label)
    raise UsageError(f"{label} has over {MAX_CHUNKS} chunks before its pixels; it is not one gigacanvas wrote")


def _decode(kind: bytes, body: bytes, label: str) -> str:
    """A text chunk's text after its keyword: tEXt is Latin-1, zTXt Latin-1 deflated, iTXt UTF-8."""
    try:
        if kind == b"tEXt":
            return body.decode("latin-1")
        if kind == b"zTXt":
            if body[:1] != b"\0":
                raise ValueError("unknown compression method")
            return _inflate(body[1:], label).decode("latin-1")
        compressed, method, rest = body[:1], body[1:2], body[2:]
        _language, _, rest = rest.partition(b"\0")
        _translated, sep, text = rest.partition(b"\0")
        if not sep or compressed not in (b"\0", b"\1") or method != b"\0":
            raise ValueError("damaged iTXt header")
        return (_inflate(text, label) if compressed == b"\1" else text).decode("utf-8")
    except (ValueError, zlib.error):  # UnicodeDecodeError is a ValueError
        raise UsageError(f"{label} has a damaged gigacanvas spec chunk") from None


def _inflate(data: bytes, label: str) -> bytes:
    """`data` inflated to at most MAX_SPEC_CHUNK bytes: a zlib bomb stops at the cap."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, MAX_SPEC_CHUNK + 1)
    if len(text) > MAX_SPEC_CHUNK:
        raise UsageError(f"{label} has a gigacanvas spec chunk over 1 MiB; a spec is a few hundred bytes")
    if not inflater.eof:
        raise ValueError("truncated zlib stream")
    return text
