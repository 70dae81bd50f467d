"""A streaming PNG encoder: rows in, band by band; a picture of any height never held whole.

Hand-written, on purpose: Pillow encodes only a whole image in memory, and pypng (the one
well-kept pure-Python PNG writer that takes an iterator of rows) writes no text chunks and only
filter type 0, which makes noise-like pictures about a third larger than Pillow's. PNG's framing is
small and fixed (signature; IHDR; our tEXt/iTXt chunks; one zlib stream cut into IDAT chunks;
IEND; each chunk length, type, data, CRC-32), so this module writes it with `zlib.compressobj`.

Rows are filtered as libpng and Pillow do by default: per row, the filter of the five (None, Sub,
Up, Average, Paeth) whose output has the smallest sum of absolute values as signed bytes; the
arithmetic is vectorised with numpy over blocks of about `FILTER_BYTES` (as many rows as fit, at
least one), so the temporaries (int16 and int32 copies of the five candidates: about 40 times the
block) stay about 10 MiB whatever the picture's width; blocks of a fixed row count made them grow
with it (120 MiB at 16384 px). Text chunks come before the pixels (the spec reader in picture.py looks
for ours only there): tEXt when the text is Latin-1, else iTXt (UTF-8), as Pillow chooses.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDAT_BYTES = 1 << 20  # compressed bytes per IDAT chunk (libpng writes 8 KiB; any size is valid)
FILTER_BYTES = 1 << 18  # bytes of rows filtered at once (see top)
BPP = 3  # bytes per pixel: 8-bit RGB (4 for RGBA: an upscale that keeps its source's alpha)
COLOUR_TYPES = {3: 2, 4: 6}  # bytes per pixel -> PNG colour type: truecolour, truecolour with alpha


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def text_chunk(keyword: str, text: str) -> bytes:
    """tEXt if `text` is Latin-1 (what readers expect), else an uncompressed iTXt in UTF-8."""
    key = keyword.encode("latin-1")
    try:
        return chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return chunk(b"iTXt", key + b"\0\0\0\0\0" + text.encode("utf-8"))


def filter_rows(rows: np.ndarray, prev: np.ndarray, bpp: int = BPP) -> bytes:
    """`rows` (n, W*bpp) uint8 filtered for PNG, each prefixed by its filter byte; `prev` is the row
    above the first (zeros for the picture's first row)."""
    n, width = rows.shape
    x = rows.astype(np.int16)
    b = np.concatenate([prev[None].astype(np.int16), x[:-1]])  # up
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]  # left
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]  # up-left
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - (a + b) // 2, x - paeth]).astype(np.uint8)  # mod 256
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)  # (5, n)
    best = cost.argmin(axis=0)
    out = np.empty((n, width + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(n)]
    return out.tobytes()


class PngStream:
    """Writes an 8-bit RGB (or, `channels` 4, RGBA) PNG to `file` as its rows arrive; `close()`
    checks that all came."""

    def __init__(
        self, file: BinaryIO, width: int, height: int, texts: list[tuple[str, str]], level: int = 6, channels: int = BPP
    ):
        if not (0 < width < 2**31 and 0 < height < 2**31):
            raise ValueError(f"a PNG is 1 to 2**31-1 pixels a side, not {width}x{height}")
        if channels not in COLOUR_TYPES:
            raise ValueError(f"a PNG of ours has 3 or 4 channels, not {channels}")
        self.file, self.width, self.height, self.channels = file, width, height, channels
        self.rows_written = 0
        self._prev = np.zeros(width * channels, np.uint8)
        self._zip = zlib.compressobj(level)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        ihdr = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)  # 8-bit, no interlace
        file.write(PNG_SIGNATURE + chunk(b"IHDR", ihdr) + b"".join(text_chunk(k, t) for k, t in texts))

    def write(self, rows: np.ndarray) -> None:
        """The next (n, W, channels) uint8 rows."""
        if rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[1:] != (self.width, self.channels):
            raise ValueError(f"rows must be (n, {self.width}, {self.channels}) uint8, not {rows.shape} {rows.dtype}")
        if self.rows_written + len(rows) > self.height:
            raise ValueError(f"more than the {self.height} rows the PNG's header promised")
        flat = rows.reshape(len(rows), -1)
        step = max(1, FILTER_BYTES // flat.shape[1])
        for y in range(0, len(flat), step):
            block = flat[y : y + step]
            self._emit(self._zip.compress(filter_rows(block, self._prev, self.channels)))
            self._prev = block[-1]
        self.rows_written += len(rows)

    def _emit(self, data: bytes, final: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= IDAT_BYTES or (final and self._pending_bytes):
            self.file.write(chunk(b"IDAT", b"".join(self._pending)))
            self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        if self.rows_written != self.height:
            raise ValueError(f"the PNG got {self.rows_written} of its {self.height} rows")
        self._emit(self._zip.flush(), final=True)
        self.file.write(chunk(b"IEND", b""))
