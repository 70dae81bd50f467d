"""The picture as an OME-Zarr multiscale image (NGFF 0.5), in the store and as an exported folder.

The store's layout (store.py) names the levels: arrays `0`, `1`, ... of (3, h_k, w_k) uint8, each
the 2 x 2 mean of the one above (an odd last row or column is repeated), down to a longer side of
at most `SMALLEST` px, and the `ome` attribute written after them. `build_levels` makes them in
squares of 2 x 2 chunks (`BLOCK`): levels 0 and 1 from each square of the store's `image`, every
further level from squares of the level above, read back (a third of the picture's bytes again in
all). Each square is chunk-aligned and its half is exactly one chunk of the level below, so every
write is whole chunks, and the process holds one square (12 MiB) and its half whatever the
canvas's width. Rows of a band at a time held a band, its transposed copy and their halves'
temporaries: about 290 MiB at 16384 px wide, growing with the width.

An export (`--out poster.ome.zarr` with a store elsewhere) is a plain OME-Zarr group holding the
same levels, copied square by square, and the same `ome` and `picture` attributes; its own marker
attribute (`gigacanvas_export`) tells our half-written export from someone else's folder. It is
written into a temp folder beside the target and renamed there on a disk; on object storage, where
there is no rename, the group's metadata (`ome`, which viewers look for) is the last key written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gigacanvas.errors import GigacanvasError, RenderError, UsageError
from gigacanvas.storage.location import Location, first_line
from gigacanvas.storage.store import IMAGE_CHUNK, LatentStore, _ZARR_KEY, is_level

SMALLEST = 512  # px: the pyramid ends at the first level whose longer side is at most this
LEVEL_CHUNK = IMAGE_CHUNK  # rows (and columns) per chunk of a level, as the image's
EXPORT_MARKER = "gigacanvas_export"
CHANNELS = (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
AXES = ("c", "y", "x")  # NGFF 0.5 wants them as each array's dimension_names too


def level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of each level from full size; each halves the one above, rounding up."""
    shapes = [(height, width)]
    while max(shapes[-1]) > SMALLEST:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def halve(rows: np.ndarray) -> np.ndarray:
    """(3, n, w) uint8 with n even, or the last odd row of a level, to (3, ceil(n/2), ceil(w/2)):
    the rounded mean of each 2 x 2 block, an odd edge row or column counted twice."""
    if rows.shape[1] % 2:
        rows = np.concatenate([rows, rows[:, -1:]], axis=1)
    if rows.shape[2] % 2:
        rows = np.concatenate([rows, rows[:, :, -1:]], axis=2)
    total = rows[:, 0::2, 0::2].astype(np.uint16) + rows[:, 1::2, 0::2] + rows[:, 0::2, 1::2] + rows[:, 1::2, 1::2]
    return ((total + 2) // 4).astype(np.uint8)


def ngff_metadata(shapes: list[tuple[int, int]], name: str) -> dict:
    """The `ome` attribute: NGFF 0.5 multiscales (axes c, y, x; scale 2^k) and RGB channels."""
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0**k, 2.0**k]}]}
        for k in range(len(shapes))
    ]
    window = {"min": 0, "max": 255, "start": 0, "end": 255}
    channels = [
        {"label": label, "color": color, "active": True, "coefficient": 1.0, "family": "linear", "inverted": False,
         "window": window}
        for label, color in CHANNELS
    ]
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": name, "type": kind} for name, kind in zip(AXES, ("channel", "space", "space"))],
                "datasets": datasets,
                "type": "mean",
                "metadata": {"description": "2 x 2 mean of the level above, odd edges repeated"},
            }
        ],
        "omero": {"channels": channels, "rdefs": {"model": "color", "defaultZ": 0, "defaultT": 0}},
    }


def has_levels(store: LatentStore) -> bool:
    """Whether the store holds its whole multiscale image (its `ome` attribute is written last)."""
    ome = store.attrs().get("ome")
    return isinstance(ome, dict) and len(ome.get("multiscales", [{}])[0].get("datasets", [])) == len(
        level_shapes(*store.image_shape)
    )


def build_levels(store: LatentStore, picture: dict) -> None:
    """The store's multiscale levels from its whole `image`, then `ome` and `picture` (see top)."""
    group = store.group
    attrs = store.attrs()
    if attrs.get("gigacanvas", {}).get("layout") == 3:
        store.set_attrs(gigacanvas={"layout": 4})  # before any level: see store.py on layout 3
    if "ome" in attrs:
        group.attrs.pop("ome")  # levels about to change: no viewer may trust them meanwhile
    shapes = level_shapes(*store.image_shape)
    for k, (h, w) in enumerate(shapes):
        group.create_array(
            str(k), shape=(3, h, w), chunks=(3, LEVEL_CHUNK, LEVEL_CHUNK), dtype="uint8", dimension_names=AXES, overwrite=True
        )
    for y0, x0 in _corners(*shapes[0]):
        square = np.ascontiguousarray(store.image_block(y0, x0, 2 * LEVEL_CHUNK).transpose(2, 0, 1))
        store.write_level_block(0, y0, x0, square)
        if len(shapes) > 1:
            store.write_level_block(1, y0 // 2, x0 // 2, halve(square))
    for k in range(2, len(shapes)):
        for y0, x0, square in level_squares(group[str(k - 1)]):
            store.write_level_block(k, y0 // 2, x0 // 2, halve(square))
    name = Path(store.location.root).name
    store.set_attrs(ome=ngff_metadata(shapes, name), picture=picture)


def level_bands(array) -> Iterator[np.ndarray]:
    """A (3, h, w) level's rows from the top, one chunk row at a time."""
    height = array.shape[1]
    for y0 in range(0, height, LEVEL_CHUNK):
        yield array[:, y0 : min(height, y0 + LEVEL_CHUNK)]


def level_squares(array) -> Iterator[tuple[int, int, np.ndarray]]:
    """(y0, x0, square) over a (3, h, w) level, in squares of 2 x 2 chunks (what build_levels
    holds), row by row: an export copies them as whole chunks without holding a band."""
    side = 2 * LEVEL_CHUNK
    for y0, x0 in _corners(*array.shape[1:]):
        yield y0, x0, array[:, y0 : y0 + side, x0 : x0 + side]


def _corners(height: int, width: int) -> Iterator[tuple[int, int]]:
    """The top-left corners of the squares of 2 x 2 chunks covering height x width, row by row."""
    side = 2 * LEVEL_CHUNK
    for y0 in range(0, height, side):
        for x0 in range(0, width, side):
            yield y0, x0


def read_zarr_attrs(url: str, label: str) -> dict:
    """The attributes in a zarr v3 group's `zarr.json`, read as a bounded file (no zarr, no arrays)."""
    from gigacanvas.storage.picture import local_path, open_regular

    here = local_path(url)
    try:
        if here is not None:
            with open_regular(here / "zarr.json", label) as file:
                raw = file.read((1 << 20) + 1)
        else:
            raw = Location(url, what="picture").read("zarr.json")
            if raw is None:
                raise UsageError(f"{label} is unreadable (no zarr.json)")
    except OSError as exc:
        raise UsageError(f"{label} is unreadable ({exc.__class__.__name__})") from exc
    if len(raw) > 1 << 20:
        raise UsageError(f"{label} has a zarr.json over 1 MiB; it is not one gigacanvas wrote")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise UsageError(f"{label} has a damaged zarr.json") from None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return attrs if isinstance(attrs, dict) else {}


def read_zarr_spec(url: str) -> dict:
    """The picture spec an OME-Zarr of ours carries (an export, or a finished store)."""
    label = f"picture {url}"
    picture = read_zarr_attrs(url, label).get("picture")
    if not isinstance(picture, dict):
        raise UsageError(f"{label} is not a finished gigacanvas picture (no 'picture' attribute in its zarr.json)")
    return picture


def export_state(url: str) -> str:
    """'new', 'ours' (an export of ours, maybe half-written, holding nothing else) or 'foreign'."""
    location = Location(url, what="out")
    found = location.contents()
    if not found.exists:
        return "new"
    if found.is_file or "zarr.json" not in found.names:
        return "foreign"
    try:
        marked = EXPORT_MARKER in read_zarr_attrs(url, f"out {url}")
    except UsageError:
        return "foreign"
    for name in found.names:
        if name == "zarr.json":
            continue
        if not is_level(name) or location.kind(name) != "dir":
            return "foreign"
        if any(not _ZARR_KEY.match(rel) for rel in location.files_under(name)):
            return "foreign"
    return "ours" if marked else "foreign"


def export_levels(out: str, store: LatentStore, picture: dict) -> str:
    """Copy the store's levels to a new OME-Zarr group at `out`, all or nothing (see top)."""
    location = Location(out, what="out")
    if location.local:
        target = Path(location.root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent))
        try:
            _write_export(str(tmp), store, picture, target.name)
            if export_state(str(target)) == "ours":  # checked again just before: only our own export goes
                trash = Path(tempfile.mkdtemp(prefix=f".{target.name[:200]}.", suffix=".old", dir=target.parent))
                os.replace(target, trash / "old")
                os.replace(tmp, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, target)  # onto nothing (or an empty folder); a file or folder in the way fails
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return str(target)
    try:
        if export_state(out) == "ours":
            location.remove("zarr.json")  # first: from here on no viewer takes it for an image
            for name in location.names(""):
                location.remove(name)
        _write_export(out, store, picture, Path(location.root).name)
    except GigacanvasError:
        raise
    except Exception as exc:  # noqa: BLE001 - the store keeps the picture: say so
        raise RenderError(
            f"out {out} could not be written ({exc.__class__.__name__}: {first_line(exc)}); the store holds the "
            "finished picture: `gigacanvas resume --store URL --out PATH` writes it again"
        ) from exc
    return out


def _write_export(url: str, store: LatentStore, picture: dict, name: str) -> None:
    import zarr

    group = zarr.create_group(store=url, zarr_format=3, overwrite=False, attributes={EXPORT_MARKER: {"layout": 1}})
    shapes = level_shapes(*store.image_shape)
    for k, (h, w) in enumerate(shapes):
        array = group.create_array(
            str(k), shape=(3, h, w), chunks=(3, LEVEL_CHUNK, LEVEL_CHUNK), dtype="uint8", dimension_names=AXES
        )
        for y0, x0, square in level_squares(store.group[str(k)]):
            array[:, y0 : y0 + square.shape[1], x0 : x0 + square.shape[2]] = square
    group.attrs.update({"ome": ngff_metadata(shapes, name), "picture": picture})  # last: the image appears whole
