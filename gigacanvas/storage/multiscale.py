"""The picture as an OME-Zarr multiscale image (NGFF 0.5), in the store and as an exported folder.

The store's layout (store.py) names the levels: arrays `0`, `1`, ... of (3, h_k, w_k) uint8, each
the 2 x 2 mean of the one above (an odd last row or column is repeated), down to a longer side of
at most `SMALLEST` px, and the `ome` attribute written after them. `build_levels` makes them from
the store's `image` in one pass, band by band: each band of level 0 is halved into level 1's rows
at once, and so on down, so besides the band only each level's partial chunk row is carried (less
than one more band in all). Levels are written in whole chunk rows, never read back.

An export (`--out poster.ome.zarr` with a store elsewhere) is a plain OME-Zarr group holding the
same levels, copied band by band, and the same `ome` and `picture` attributes; its own marker
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


class _Pyramid:
    """Takes level 0's rows in order and writes every level in whole chunk rows, via `write(k, y0, rows)`."""

    def __init__(self, count: int, write):
        self.count, self.write = count, write
        self.buf: list[list[np.ndarray]] = [[] for _ in range(count)]  # rows of level k not yet written
        self.odd: list[np.ndarray | None] = [None] * count  # a row of level k waiting for its pair
        self.y = [0] * count  # rows of level k written

    def add(self, k: int, rows: np.ndarray) -> None:
        self.buf[k].append(rows)
        held = np.concatenate(self.buf[k], axis=1) if len(self.buf[k]) > 1 else rows
        whole = held.shape[1] // LEVEL_CHUNK * LEVEL_CHUNK
        if whole:
            self.write(k, self.y[k], held[:, :whole])
            self.y[k] += whole
        self.buf[k] = [held[:, whole:]] if whole < held.shape[1] else []
        if k + 1 < self.count:
            if self.odd[k] is not None:
                rows = np.concatenate([self.odd[k], rows], axis=1)
            even = rows.shape[1] // 2 * 2
            self.odd[k] = rows[:, even:] if even < rows.shape[1] else None
            if even:
                self.add(k + 1, halve(rows[:, :even]))

    def finish(self) -> None:
        for k in range(self.count):
            if self.odd[k] is not None and k + 1 < self.count:
                self.add(k + 1, halve(self.odd[k]))
            if self.buf[k]:
                rest = np.concatenate(self.buf[k], axis=1)
                self.write(k, self.y[k], rest)
                self.y[k] += rest.shape[1]


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
    pyramid = _Pyramid(len(shapes), store.write_level_rows)
    for band in store.image_bands():
        pyramid.add(0, np.ascontiguousarray(band.transpose(2, 0, 1)))
    pyramid.finish()
    name = Path(store.location.root).name
    store.set_attrs(ome=ngff_metadata(shapes, name), picture=picture)


def level_bands(array) -> Iterator[np.ndarray]:
    """A (3, h, w) level's rows from the top, one chunk row at a time."""
    height = array.shape[1]
    for y0 in range(0, height, LEVEL_CHUNK):
        yield array[:, y0 : min(height, y0 + LEVEL_CHUNK)]


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
        y0 = 0
        for rows in level_bands(store.group[str(k)]):
            array[:, y0 : y0 + rows.shape[1]] = rows
            y0 += rows.shape[1]
    group.attrs.update({"ome": ngff_metadata(shapes, name), "picture": picture})  # last: the image appears whole
