"""The picture as a tiled, pyramidal BigTIFF (tifffile), streamed from the store tile by tile.

Level 0 is the store's `image`; the reduced levels are the store's multiscale levels (store.py,
multiscale.py), stored as SubIFDs of the first page (`subfiletype` 1), the layout QuPath, OpenSlide-
style viewers, GDAL and tifffile's `series[0].levels` read. Every level is handed to tifffile as an
iterator of `TILE` x `TILE` tiles cut from one band of the store at a time, so no level is ever held
whole; edge tiles are zero-padded by tifffile. Deflate with horizontal differencing, the lossless
pair every TIFF reader has. BigTIFF always: a 16K picture's 768 MiB of pixels is near classic
TIFF's 4 GiB limit only compressed, and a gigapixel one is past it.

The render's spec (as a PNG's `gigacanvas` chunk) is the ImageDescription of the first page, as
JSON `{"gigacanvas": spec}` (tifffile writes a JSON description of its own into every TIFF it
makes, so a bare mapping would not tell ours from anyone's); `read_tiff_spec` gets it back
through tifffile, which parses the first page's tags only (values and all, so the 1 MiB cap on
the description is checked after tifffile read it: a hostile file can make it read a large tag).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gigacanvas.errors import UsageError
from gigacanvas.storage.multiscale import level_bands, level_shapes
from gigacanvas.storage.picture import open_picture, write_file
from gigacanvas.storage.store import LatentStore

TILE = 512  # px; a multiple of 16 (TIFF's rule) that divides the store's 1024-row bands
MAX_DESCRIPTION = 1 << 20  # bytes of spec we read back; a spec is a few hundred
SPEC_KEY = "gigacanvas"  # the description is {"gigacanvas": spec}: tifffile's own is JSON too


def _tiles(bands: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """(TILE, TILE, 3) tiles in TIFF order (row-major), from (n, W, 3) bands whose n is a multiple
    of TILE but the last's."""
    for band in bands:
        for y in range(0, band.shape[0], TILE):
            for x in range(0, band.shape[1], TILE):
                yield np.ascontiguousarray(band[y : y + TILE, x : x + TILE])


def write_tiff(path: str | Path, store: LatentStore, picture: dict) -> str | Path:
    """The store's picture and levels as a BigTIFF at `path` (a path or URL), all or nothing."""
    import tifffile

    shapes = level_shapes(*store.image_shape)

    def encode(tmp: Path) -> None:
        options = dict(dtype="uint8", tile=(TILE, TILE), photometric="rgb", compression="zlib", predictor=True,
                       metadata=None)
        with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
            tif.write(
                _tiles(store.image_bands()), shape=(*shapes[0], 3), subifds=len(shapes) - 1,
                description=json.dumps({SPEC_KEY: picture}, sort_keys=True), software="gigacanvas", **options,
            )
            for k in range(1, len(shapes)):
                bands = (rows.transpose(1, 2, 0) for rows in level_bands(store.group[str(k)]))
                tif.write(_tiles(bands), shape=(*shapes[k], 3), subfiletype=1, **options)

    return write_file(path, encode)


def read_tiff_spec(path: str | Path) -> dict:
    """The spec a gigacanvas TIFF carries in its first ImageDescription; a usage error otherwise."""
    import tifffile

    label = f"picture {path}"
    with open_picture(path, label) as file:
        try:
            with tifffile.TiffFile(file, name=Path(str(path)).name) as tif:
                tag = tif.pages.first.tags.get("ImageDescription")
                if tag is not None and tag.count > MAX_DESCRIPTION:
                    raise UsageError(f"{label} has a description over 1 MiB; a spec is a few hundred bytes")
                text = tag.value if tag is not None else None
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - tifffile's TiffFileError, a truncated file
            raise UsageError(f"{label} is not a readable TIFF ({exc.__class__.__name__})") from None
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        data = None
    data = data.get(SPEC_KEY) if isinstance(data, dict) else None
    if not isinstance(data, dict):
        raise UsageError(f"{label} is a TIFF without a gigacanvas spec (its description is no spec of ours)")
    return data
