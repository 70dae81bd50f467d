"""The render's output, picked by `--out`'s suffix, written from the store band by band.

- `.png`: streamed band by band (picture.py, pngstream.py), at most `MAX_PNG_SIDE` px a side;
- `.tif` / `.tiff`: a tiled pyramidal BigTIFF (tiff.py);
- `.ome.zarr`: an OME-Zarr multiscale image (multiscale.py). Without `--store` (or with the same
  URL) the store itself is the output: its levels and `ome` attribute are what viewers open. With
  a store elsewhere it is an export, a folder of the levels alone.

Whatever the output, the store gets its multiscale levels first (one pass over `image`): the
TIFF's reduced levels are read from them, and every finished store opens in an OME-Zarr viewer.
No output reads the picture whole: each reads one band of `image` or of a level at a time.

Why PNG stops at 16384 px a side although PNG allows 2^31 - 1: common viewers and browsers refuse
or choke on larger ones (Pillow itself calls anything over ~179 megapixels a decompression bomb),
and a PNG has no reduced levels, so a viewer must inflate the whole picture to show any of it. A
larger picture is refused before any work with a line that suggests TIFF or OME-Zarr, which have
tiles and levels.

Safety, as for pictures (plan.py): an existing output is replaced only if it is a gigacanvas
picture of the same render, or of another with --overwrite; anything else is never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gigacanvas.errors import UsageError
from gigacanvas.storage.location import Location, first_line, is_url, local_url_path

MAX_PNG_SIDE = 16384
SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".ome.zarr": "ome-zarr"}


def output_kind(out: str) -> str | None:
    """'png', 'tiff' or 'ome-zarr' from `out`'s suffix (any case); None for another suffix."""
    name = out.rstrip("/").lower()
    return next((kind for suffix, kind in SUFFIXES.items() if name.endswith(suffix)), None)


def stem(out: str) -> str:
    """`out` without its output suffix: `poster` for poster.png, poster.tif and poster.ome.zarr."""
    out = out.rstrip("/")
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if out.lower().endswith(suffix):
            return out[: -len(suffix)]
    return out


def check_out_name(out: str, width: int, height: int) -> None:
    """Refuse an unknown suffix, or a PNG too large for viewers (see top), naming what to use."""
    kind = output_kind(out)
    shown = out if len(out) <= 60 else "..." + out[-57:]
    if kind is None:
        raise UsageError(f"out {shown!r} must end in .png, .tif, .tiff or .ome.zarr (the output's format)")
    if kind == "png" and max(width, height) > MAX_PNG_SIDE:
        name = stem(out.rstrip("/").rsplit("/", 1)[-1])[:40] or "picture"
        raise UsageError(
            f"out {shown!r}: a PNG is at most {MAX_PNG_SIDE} px a side (viewers refuse larger ones) and this picture "
            f"is {width}x{height}; write a tiled pyramidal BigTIFF (--out {name}.tif) or an OME-Zarr ({name}.ome.zarr)"
        )


def store_beside(out: str) -> str:
    """The default store for `out`: the OME-Zarr output itself, else OUT.zarr beside the picture."""
    if output_kind(out) == "ome-zarr":
        return out.rstrip("/")
    if is_url(out):  # an object prefix there too (a Path would fold '//')
        return stem(out) + ".zarr"
    return str(Path(stem(out) + ".zarr"))


def same_place(a: str, b: str) -> bool:
    """Whether two URLs or paths name one folder (any spelling of a local path)."""
    a, b = a.rstrip("/"), b.rstrip("/")
    if a == b:
        return True
    if is_url(a) and not a.startswith(("file://", "local://")) or is_url(b) and not b.startswith(("file://", "local://")):
        return False
    paths = [os.path.realpath(os.path.expanduser(local_url_path(x))) for x in (a, b)]
    return paths[0] == paths[1]


def read_output_spec(path: str | Path) -> dict:
    """The spec a gigacanvas output carries, by suffix; a usage error for anything else."""
    kind = output_kind(str(path))
    if kind == "tiff":
        from gigacanvas.storage.tiff import read_tiff_spec

        return read_tiff_spec(path)
    if kind == "ome-zarr":
        from gigacanvas.storage.multiscale import read_zarr_spec

        return read_zarr_spec(str(path))
    from gigacanvas.storage.picture import read_png_spec

    return read_png_spec(path)


def _not_ours(out: str) -> UsageError:
    return UsageError(
        f"out {out} exists and is not a gigacanvas picture; gigacanvas never replaces it "
        "(not even with --overwrite): pass another --out"
    )


def existing_output_spec(out: str) -> dict | None:
    """The spec of the gigacanvas output already at `out`, or None if there is none (or only a
    half-written export of ours); refuses a place gigacanvas could not write, and anything there
    that is not a gigacanvas picture. Writes nothing (a probe file is made and removed at once)."""
    from gigacanvas.storage.atomic import check_writable_file, check_writable_folder
    from gigacanvas.storage.picture import check_picture_url, local_path

    here = local_path(out)
    if output_kind(out) != "ome-zarr":
        exists = check_writable_file(here, "out").exists() if here is not None else check_picture_url(out)
    elif here is not None:
        here = here.expanduser()
        if here.is_dir():
            check_writable_folder(here.parent, "out")  # the export is written beside it, then renamed
        else:
            check_writable_folder(here, "out")  # a file in the way is refused here
        exists = here.exists()
    else:
        exists = _check_bucket(out)
    if not exists:
        return None
    if output_kind(out) == "ome-zarr":
        from gigacanvas.storage.multiscale import export_state, read_zarr_spec

        if export_state(out) != "ours":
            raise _not_ours(out)
        try:
            return read_zarr_spec(out)
        except UsageError:
            return None  # an export of ours that never finished: nothing to keep
    try:
        return read_output_spec(out)
    except UsageError:
        raise _not_ours(out) from None


def _check_bucket(url: str) -> bool:
    """Whether anything is under object-storage prefix `url`; refused if it cannot be written."""
    location = Location(url, what="out")
    if location.protocol == "memory":
        raise UsageError(f"out {url} would vanish with this process (memory://); pass a path or an object-storage URL")
    bucket = location.root.split("/", 1)[0]
    try:
        if not location.fs.exists(bucket):
            raise UsageError(f"out {url}: bucket {bucket} does not exist (or these credentials cannot see it)")
        return bool(location.fs.exists(location.root))
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - no credentials, a refused connection, ...
        raise UsageError(f"out {url} cannot be reached ({exc.__class__.__name__}: {first_line(exc)})") from exc


def with_alpha(bands, alpha: np.ndarray, height: int, width: int, wrap: tuple[bool, bool] = (False, False)):
    """(n, W, 4) uint8 bands: each of `bands` ((n, W, 3) from the top) with its rows of `alpha`
    (the source's, (h, w) uint8) upscaled to height x width by the resampler that upscaled the
    colour (Pillow's LANCZOS; periodic along `wrap`'s axes, rows and columns, as the colour's on a
    torus), in one piece: Pillow's windowed resize is not bit for bit the
    whole one (tiling/resample.py), and a PNG (the only output that keeps alpha) is at most
    MAX_PNG_SIDE a side, so the whole alpha is at most 256 MiB."""
    from PIL import Image

    if any(wrap):
        from gigacanvas.tiling.grid import Window
        from gigacanvas.tiling.resample import resize_window

        whole = resize_window(alpha, height, width, Window(0, 0, height, width), wrap)
    else:
        with Image.fromarray(np.ascontiguousarray(alpha), "L") as im:
            whole = np.asarray(im.resize((width, height), Image.LANCZOS), dtype=np.uint8)
    y = 0
    for band in bands:
        yield np.concatenate([band, whole[y : y + len(band), :, None]], axis=2)
        y += len(band)


def write_output(out: str, store, picture: dict, parameters: str) -> str:
    """The store's finished picture to `out` in the format its suffix names (see top); returns `out`."""
    from gigacanvas.storage.multiscale import build_levels, export_levels, has_levels

    if not has_levels(store):
        build_levels(store, picture)
    elif store.attrs().get("picture") != picture:
        store.set_attrs(picture=picture)  # same pixels, the model found at another path, say
    kind = output_kind(out)
    if kind == "png":
        from gigacanvas.storage.picture import write_png_bands

        height, width = store.image_shape
        alpha = store.source_alpha()  # an upscale that keeps its source's transparency (cluster/upscale.py)
        if alpha is None:
            return str(write_png_bands(out, width, height, store.image_bands(), picture, parameters))
        wrap = picture.get("wrap") or ""  # the spec's axes: x, y, xy
        bands = with_alpha(store.image_bands(), alpha, height, width, ("y" in wrap, "x" in wrap))
        return str(write_png_bands(out, width, height, bands, picture, parameters, channels=4))
    if kind == "tiff":
        from gigacanvas.storage.tiff import write_tiff

        return str(write_tiff(out, store, picture))
    if same_place(out, store.url):
        return out  # the store itself, its levels now whole
    return export_levels(out, store, picture)
