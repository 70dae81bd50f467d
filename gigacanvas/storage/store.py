"""The render's memory: a zarr v3 group at any fsspec URL, versioned, crash-safe, never greedy.

Layout version 5 (`LAYOUT`; the group attribute `gigacanvas.layout` names it):
- arrays `noise` (C, H, W float32: the initial latent, after `start_step` steps), `latent_a` and
  `latent_b` (C, H, W float32: two slots for the latent after some step), `image` (H, W, 3 uint8:
  the picture);
- group attribute `start_step` (since layout 5; absent: 0): the step the `noise` array's latent is
  at. 0 for a render from noise; for a refinement (cluster/compose.py) the noised, upscaled
  composition at the step its strength starts from. Band records start there (a record at
  `start_step` names slot `noise`), so the step loop, resume, status and preview count from it;
- `stages/NAME` (since layout 5, a composed render's): each earlier stage of the render, the
  composition `0-WxH-HASH` first, as a store of this layout of its own (its own spec, lease,
  records and picture; never a `stages/` of its own), NAME hashing the stage's spec, its source
  stage and the model's fingerprint. The group attribute `stages` lists the names the render uses.
  `clear()` keeps them (a render of another strength reuses the composition); `inspect()` counts
  the store as ours only if every entry there is a store of ours;
- once the picture is whole, its OME-Zarr multiscale image (NGFF 0.5), so that viewers (napari,
  vizarr, neuroglancer, QuPath) open the store itself as a picture: arrays `0`, `1`, ... (3,
  ceil(H / 2^k), ceil(W / 2^k)) uint8, chunks (3, 1024, 1024), axes c, y, x, each level the 2 x 2
  mean of the one above, down to a longer side of at most 512; then, in one put of the group's
  metadata, the attributes `ome` (the NGFF metadata: multiscales, axes, datasets, RGB channels)
  and `picture` (the picture's spec, as a PNG's spec chunk carries it). Viewers see no image until
  every level is whole; levels without `ome` are rebuilt. multiscale.py writes them, a square of
  2 x 2 chunks at a time; a level 0 in (c, y, x) order beside `image` costs a second copy of the pixels, because NGFF wants
  channels before space and `image` is what the decode writes, tile by tile, in (y, x, c);
- array `source_alpha` (since layout 5, an upscale's that keeps its source's transparency:
  cluster/upscale.py): the source picture's alpha, (h, w) uint8 at the source's size, written
  before the initial latent; the output's alpha is its upscale (outputs.with_alpha), so a resume needs
  the store alone;
- group attributes `spec` (the pixel-deciding fields; with LoRAs, `lora_fingerprints`: each
  LoRA's content fingerprint and weight, absent without: stores made before LoRAs match as they
  were), `fingerprint` (the model's), `precision`,
  `bands` = [[y0, y1], ...] (the latent's row bands, contiguous, on chunk-row boundaries, so no
  two bands ever write one chunk), `local` (optional: what `gigacanvas resume --store URL` needs
  beyond the pixels, `RenderSpec.resume_record()`: model, base_model, precision as asked,
  strict_precision, actors, cpus_per_actor, out, address, preview, preview_every (these two since
  layout 4; absent, no preview), lora (the `--lora` entries as given; absent, none), and `cwd`, the folder relative paths are from; written at creation and by each run that resumes the store, so it names the latest
  command; a composed render's earlier stage records `out` and `preview` as null, never the final
  render's: its picture stays in its store, and `resume` refuses it in one line) and, once the picture is whole, `decoded` = true (the decode writes `image` one tile's
  core at a time, by the driver alone; an interrupted decode leaves `decoded` unset, and the next
  run decodes again from the committed latent, writing the same bytes). A store is the user's own, unlike a
  picture, so it may name paths and a cluster; a layout-3 store without `local` (made before it
  existed) resumes by its render command only; the final store of a composed render is created (with
  its spec and `local`, but no band records) before its stages run, so `gigacanvas resume` finds it
  mid-composition;
- one small key per band, `band-NNN.json` = {"step": s, "slot": "noise" | "a" | "b", "at": t,
  "prev": {"step": s', "slot": ..., "at": t'} | null}: the slot holding this band's rows after `s`
  steps, and the one it held before (after s' = s - 1 steps); `at` is the commit's Unix time
  (optional: `gigacanvas status` reads the pace from it; stores without it resume alike);
- `lease-NNNNNN.json` keys beside the group (see lease.py): every write checks the lease first,
  the driver's own (`lease`) or, in a reducer's process, the `LeaseTicket` the driver handed it
  (`LatentStore(url, ticket=...)`), so a render that lost the store writes nothing more to it.

Why slots, per band: a band's step s + 1 is written into the slot its record does not name, then
its record moves to it in one all-or-nothing put (`Location.put`: a temp file and a rename on
disk, one PUT on object storage). Bands are committed by different processes at once (one
reducer each), so each has its own record key; one shared zarr.json would be a read-modify-write
race. A crash leaves every band's record naming whole rows, after any number of crashes.

A consistent state: the step loop (cluster/steploop.py, a wavefront with no per-step barrier for
the workers) lets a band commit step s + 1 only after every band has committed step s, so after a
crash the bands' steps differ by at most one.
Reads (`read_latent`, `read_rows`) return every band at the minimum committed step m: a band at
m + 1 is read from its `prev` slot, which is still whole because the slot being written is never
one a record names. Resuming from m, a band already at m + 1 keeps its record (`commit_band`
skips a step it has: the step is deterministic, so its rows are the same).

What may be deleted: only gigacanvas's own keys (`OWN_NAMES`, band records, level arrays) in a
folder that holds nothing else. `inspect()` classifies a URL before anything is written, and the
render refuses every other kind. Layout 4 (layout 5 without `start_step` and `stages/`) is
resumed as it is. Layout 3 (layout 4 without the multiscale levels) is resumed as
it is; before a level is written into it, its marker becomes 4, so a gigacanvas that knows only
layout 3 calls it newer instead of taking the levels for someone else's files. Layout 1 (arrays
`latent`, `latent_next`, attributes `completed_step`/`next_step`) and layout 2 (one `commit`
attribute for the whole latent) are recognised as older gigacanvas stores: they can be replaced
with --overwrite but not resumed. Only storage/ imports
zarr or fsspec (this module, location.py, multiscale.py for the levels, and fetch.py for models on
object storage).
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.lease import PREFIX as LEASE_PREFIX
from gigacanvas.storage.lease import LeaseTicket, StoreLease
from gigacanvas.storage.location import Location

LAYOUT = 5
RESUMABLE_LAYOUTS = (3, 4, 5)  # 3: no multiscale levels yet; 4: no start step, no stages (see the module docstring)
STAGES = "stages"  # the folder of a composed render's earlier stages, each a store of this layout
LATENT_CHUNK = 128  # latent pixels per chunk side: 1 MiB per 16-channel float32 chunk
IMAGE_CHUNK = 1024
OWN_NAMES = ("zarr.json", "noise", "latent_a", "latent_b", "image", "source_alpha")  # and band records, levels (layouts 3-5), stages (5)
OLD_NAMES = ("zarr.json", "noise", "latent", "latent_next", "image")  # layout 1
RECORD_PREFIX = "band-"


def _record_key(band: int) -> str:
    return f"{RECORD_PREFIX}{band:03d}.json"


def _is_record(name: str) -> bool:
    return name.startswith(RECORD_PREFIX) and name.endswith(".json")


MAX_LEVELS = 32  # multiscale levels: 2^31 px a side halves to 1 in 31


def is_level(name: str) -> bool:
    """An OME-Zarr level array's name: `0`, `1`, ... written plainly."""
    return name.isdigit() and name == str(int(name)) and int(name) < MAX_LEVELS


def _valid_record(record: Any, prev: bool = False, start: int = 0) -> bool:
    """A commit record's shape: whole-number step from the store's start step, a known slot (`noise`
    exactly at the start), an optional time, a prev."""
    if not isinstance(record, dict):
        return False
    step, slot = record.get("step"), record.get("slot")
    if type(step) is not int or not start <= step <= 10**6 or slot not in ("noise", "a", "b"):
        return False
    if (slot == "noise") != (step == start):
        return False
    if prev:
        return True
    before = record.get("prev")
    return before is None if step == start else _valid_record(before, True, start) and before["step"] == step - 1


def plan_bands(height: int, count: int, chunk: int = LATENT_CHUNK) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Chunk rows and up to `count` row bands for a latent `height` rows high.

    Band edges fall on chunk rows so that no two bands share a chunk (a shared chunk would be a
    read-modify-write race between reducers). A canvas with fewer chunk rows than `count` gets
    smaller chunks (never under 8 rows) before it gets fewer bands.
    """
    count = max(1, min(count, height))
    rows = -(-height // count)
    chunk_rows = min(chunk, max(8, -(-rows // 8) * 8))
    chunks = -(-height // chunk_rows)
    count = min(count, chunks)
    edges = [min(height, (i * chunks // count) * chunk_rows) for i in range(count + 1)]
    edges[-1] = height
    return chunk_rows, tuple((edges[i], edges[i + 1]) for i in range(count))


# Object stores throttle (S3's SlowDown) and drop connections: a failed write is tried again with
# backoff, 0.2 s doubling, 5 tries in all (about 6 s). Every write here is idempotent (the same
# bytes to the same keys; a record is one all-or-nothing put), so a retry cannot leave a store
# that resumes wrong. Only errors that may pass are retried: not a full, read-only or forbidden
# disk, a missing bucket, nor our own refusals (a lease lost).
STORE_TRIES = 5
STORE_RETRY_S = float(os.environ.get("GIGACANVAS_STORE_RETRY_S", "0.2"))
_LASTING_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return type(exc) is OSError and exc.errno not in _LASTING_ERRNOS


def _retrying(url: str, what: str, write: Callable[[], Any]) -> Any:
    """`write()`, tried again on a transient error; after STORE_TRIES, one line saying what failed."""
    for attempt in range(STORE_TRIES):
        try:
            return write()
        except Exception as exc:  # noqa: BLE001 - sorted just below
            if not _transient(exc):
                raise
            if attempt == STORE_TRIES - 1:
                raise RenderError(
                    f"store {url}: {what} failed {STORE_TRIES} times ({exc.__class__.__name__}: {exc}); "
                    "the store keeps its last committed step"
                ) from None
            time.sleep(STORE_RETRY_S * 2**attempt)
    return None


_ZARR_KEY = re.compile(r"^(zarr\.json|c(/\d+)+|.*\.partial)$")  # an array's metadata, chunks, temp files


def _is_temp(name: str) -> bool:
    """A temp file of an interrupted all-or-nothing write: zarr's `zarr.<uuid>.partial` or ours."""
    return name.endswith(".partial")


@dataclass(frozen=True)
class StoreState:
    """What `inspect()` found at a store URL, before anything is written there."""

    kind: str  # "new", "empty", "ours", "ours-unfinished", "old", "newer", "foreign", "file"
    layout: int | None = None
    others: tuple[str, ...] = ()  # entries that are not gigacanvas's (kind "foreign")


class LatentStore:
    """One render's arrays and attributes; see the module docstring for the layout."""

    def __init__(self, url: str, ticket: LeaseTicket | None = None):
        """`ticket`: the driver's lease, for a store opened in another process (a band reducer);
        every write checks it first and raises RenderError once the lease is not the store's.

        A plain path is made absolute here: reducers open the store by `url` in processes whose
        working folder is the cluster's, not the driver's (`~` is expanded, as fsspec does)."""
        self.url = url if "://" in url else os.path.abspath(os.path.expanduser(url))
        self.location = Location(url, self._options(url))
        self.protocol = self.location.protocol
        self._group = None
        self._bands: tuple[tuple[int, int], ...] | None = None  # checked once, then kept (never change)
        self._start: int | None = None  # likewise the start step
        self.lease: StoreLease | None = None  # the driver's, set by the claim
        self.ticket = ticket

    @staticmethod
    def _options(url: str) -> dict | None:
        # file:// and local:// URLs go through fsspec, which must be told to make the store's folders
        return {"auto_mkdir": True} if url.startswith(("file://", "local://")) else None

    def _open(self, mode: str):
        import zarr

        try:
            return zarr.open_group(store=self.url, mode=mode, zarr_format=3, storage_options=self._options(self.url))
        except (FileNotFoundError, NotADirectoryError, zarr.errors.GroupNotFoundError):
            return None
        except Exception as exc:  # noqa: BLE001 - any backend failure is one clear line
            raise UsageError(f"store {self.url} cannot be opened ({exc.__class__.__name__}: {exc})") from exc

    @property
    def group(self):
        if self._group is None:
            self._group = self._open("r+")
            if self._group is None:
                raise RenderError(f"store {self.url} does not exist")
        return self._group

    # -- what is there --------------------------------------------------------------------------
    def inspect(self) -> StoreState:
        """Classify the URL without writing; a folder of anything else is 'foreign'."""
        found = self.location.contents()
        if not found.exists:
            return StoreState("new")
        if found.is_file:
            return StoreState("file")
        names = tuple(n for n in found.names if not n.startswith(LEASE_PREFIX) and not _is_temp(n))
        if STAGES in names:  # a composed render's earlier stages: ours only if every entry is a store of ours
            strays = self._stage_strays()
            if strays:
                return StoreState("foreign", None, strays)
            names = tuple(n for n in names if n != STAGES)
        if not names:
            return StoreState("empty")
        group = self._open("r") if "zarr.json" in names else None
        attrs = dict(group.attrs) if group is not None else {}
        marker = attrs.get("gigacanvas")
        if isinstance(marker, dict) and isinstance(marker.get("layout"), int):
            layout = marker["layout"]
            if layout > LAYOUT:
                return StoreState("newer", layout)
            resumable = layout in RESUMABLE_LAYOUTS
            extra = (n for n in names if _is_record(n) or (layout >= 4 and is_level(n)))
            own = (*OWN_NAMES, *extra) if resumable else OWN_NAMES
            others = tuple(n for n in names if n not in own) or self._not_zarr(names)
            if others:
                return StoreState("foreign", layout, others)
            if not resumable:
                return StoreState("old", layout)
            bands = attrs.get("bands") or ()
            whole = bool(bands) and all(_record_key(i) in names for i in range(len(bands)))
            return StoreState("ours" if whole else "ours-unfinished", layout)
        if group is not None and "spec" in group.attrs and "completed_step" in group.attrs:
            others = tuple(n for n in names if n not in OLD_NAMES) or self._not_zarr(names)
            return StoreState("foreign", 1, others) if others else StoreState("old", 1)
        return StoreState("foreign", None, names)

    def stage(self, name: str) -> LatentStore:
        """The earlier stage `name` of a composed render (`stages/NAME`, a store of its own)."""
        return LatentStore(f"{self.url.rstrip('/')}/{STAGES}/{name}", ticket=self.ticket)

    def stage_names(self) -> list[str]:
        return Location(f"{self.url.rstrip('/')}/{STAGES}", self._options(self.url)).names("")

    def _stage_strays(self) -> tuple[str, ...]:
        """Entries of `stages/` that are not gigacanvas stores of this layout (a stage holds no stages)."""
        if self.location.kind(STAGES) != "dir":
            return (STAGES,)
        strays = []
        for name in self.stage_names():
            state = self.stage(name).inspect()
            if state.kind not in ("ours", "ours-unfinished", "empty") or state.layout not in (None, LAYOUT):
                strays.append(f"{STAGES}/{name}")
            elif any(n == STAGES for n in self.stage(name).location.names(STAGES)):
                strays.append(f"{STAGES}/{name}/{STAGES}")
        return tuple(strays)

    def _not_zarr(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Entries below our own names that zarr did not write (a user's file in `image/`, a file
        named `noise`): a store holding them is not only ours, and `clear()` would delete them."""
        found = []
        for name in names:
            kind = self.location.kind(name)
            if name == "zarr.json" or _is_record(name):  # files: the group's metadata, band records
                if kind != "file":
                    found.append(name)
            elif kind != "dir":
                found.append(name)
            else:
                found += [f"{name}/{rel}" for rel in self.location.files_under(name) if not _ZARR_KEY.match(rel)]
        return tuple(found)

    def exists(self) -> bool:
        """Whether a resumable gigacanvas store of this layout is at the URL."""
        return self.inspect().kind == "ours"

    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    # -- writing --------------------------------------------------------------------------------
    def clear(self, state: StoreState) -> None:
        """Delete gigacanvas's own keys (never anything else) so a new render can start here."""
        now = self.inspect()  # again, just before deleting: only what is still purely ours goes
        if state.kind not in ("ours", "ours-unfinished", "old") or now.kind != state.kind:
            raise UsageError(f"store {self.url} is not (or no longer) only a gigacanvas store; refusing to delete anything there")
        self._group = None
        self._bands = None
        self._start = None
        for name in OLD_NAMES if state.kind == "old" and state.layout == 1 else OWN_NAMES:
            self.location.remove(name)
        for name in self.location.names(""):
            if _is_temp(name) or _is_record(name) or is_level(name):
                self.location.remove(name)

    def create(
        self, spec: dict, fingerprint: str, channels: int, height: int, width: int, scale: int,
        bands: int = 1, start: int = 0, **attrs: Any,
    ) -> None:
        """A fresh store at a URL that `inspect()` found new, empty, or cleared of our own keys.

        `bands` is how many row bands (reducers) the latent is split into at most; the split
        (`plan_bands`) is recorded and kept by every resume, whatever its actor count. `start` is
        the step the latent written by `write_noise` is at (a refinement's; 0: pure noise).
        """
        import zarr

        self._group = None
        self._bands = None
        self._start = None
        chunk_rows, split = plan_bands(height, bands)
        try:
            # overwrite=False: fail rather than replace if a group appeared since the check (the lease
            # beside it does not count). The marker is in the group's first metadata write, so a
            # crash from here on leaves 'ours-unfinished'.
            group = zarr.create_group(
                store=self.url,
                overwrite=False,
                zarr_format=3,
                storage_options=self._options(self.url),
                attributes={
                    "gigacanvas": {"layout": LAYOUT}, "spec": spec, "fingerprint": fingerprint,
                    "bands": [list(b) for b in split], "start_step": start, **attrs,
                },
            )
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"store {self.url} cannot be created ({exc.__class__.__name__}: {exc})") from exc
        # Latents are noise-like floats: zstd saves ~6% and costs most of a step's write time.
        latent = dict(
            shape=(channels, height, width), chunks=(channels, chunk_rows, LATENT_CHUNK), dtype="float32", compressors=None
        )
        try:
            for name in ("noise", "latent_a", "latent_b"):
                group.create_array(name, **latent)
            group.create_array("image", shape=(height * scale, width * scale, 3), chunks=(IMAGE_CHUNK, IMAGE_CHUNK, 3), dtype="uint8")
        except Exception as exc:  # noqa: BLE001 - the store stays 'ours-unfinished': the next run recreates it
            raise RenderError(f"store {self.url} cannot be created ({exc.__class__.__name__}: {exc}); run again") from None
        # no band records yet: until write_noise, the store is 'ours-unfinished' and is simply recreated
        self._group = group

    def set_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(attrs)

    @property
    def bands(self) -> tuple[tuple[int, int], ...]:
        """The latent's row bands, [y0, y1) in latent rows, as created: contiguous from row 0 to the
        latent's last (a store edited by hand is refused here, before any work)."""
        if self._bands is not None:
            return self._bands
        raw = self.group.attrs.get("bands")
        height = self.group["noise"].shape[1]
        try:
            bands = tuple((y0, y1) for y0, y1 in raw)
            ok = bool(bands) and all(type(v) is int for b in bands for v in b)
            ok = ok and bands[0][0] == 0 and bands[-1][1] == height
            ok = ok and all(y0 < y1 for y0, y1 in bands) and all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UsageError(f"store {self.url} has damaged row bands ({str(raw)[:80]}); it was edited or damaged")
        self._bands = bands
        return bands

    def band_record(self, band: int) -> dict[str, Any]:
        """Band `band`'s commit record, checked (see the module docstring for its fields)."""
        data = self.location.read(_record_key(band))
        if data is None:
            raise RenderError(f"store {self.url} has no commit record for band {band}; it is unfinished")
        try:
            record = json.loads(data) if len(data) < 4096 else None
        except (ValueError, RecursionError):
            record = None
        if not _valid_record(record, start=self.start_step):
            raise UsageError(
                f"store {self.url}: {_record_key(band)} is not a valid commit record ({data[:60]!r}); "
                "the store was edited or damaged"
            )
        return record

    def _check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()
        if self.ticket is not None:
            self.ticket.check(self.location)

    @property
    def start_step(self) -> int:
        """The step the `noise` array's latent is at: 0 (pure noise), or a refinement's first step."""
        if self._start is None:
            start = self.group.attrs.get("start_step", 0)
            if type(start) is not int or not 0 <= start <= 10**6:
                raise UsageError(f"store {self.url} has a damaged start_step ({str(start)[:40]}); it was edited or damaged")
            self._start = start
        return self._start

    def write_noise(self, noise: np.ndarray | Callable[[int, int], np.ndarray]) -> None:
        """The initial latent (at `start_step`), then every band's record at that step (the store is
        'ours' after the last).

        `noise` is the whole (C, H, W) latent or a function of a row range [y0, y1) giving those
        rows: then it is asked chunk row by chunk row from the top (at most LATENT_CHUNK rows; not
        band by band: a band is the reducer's, half the latent with two actors), so the writer
        never holds more than a chunk row of a canvas that may be far larger than it.
        """
        self._check_lease()
        array = self.group["noise"]
        if callable(noise):
            height, step = array.shape[1], array.chunks[1]
            for y0, y1 in ((y, min(height, y + step)) for y in range(0, height, step)):
                rows = noise(y0, y1)
                _retrying(self.url, "writing the initial noise", lambda y0=y0, y1=y1, rows=rows: array.__setitem__((slice(None), slice(y0, y1)), rows))
                del rows
        else:
            _retrying(self.url, "writing the initial noise", lambda: array.__setitem__(Ellipsis, noise))
        for band in range(len(self.bands)):
            record = {"step": self.start_step, "slot": "noise", "at": time.time(), "prev": None}
            data = json.dumps(record).encode()
            _retrying(self.url, f"recording band {band}", lambda band=band, data=data: self.location.put(_record_key(band), data))

    def read_noise(self) -> np.ndarray:
        return self.group["noise"][...]

    def commit_band(self, band: int, rows: np.ndarray, step: int) -> bool:
        """Record `rows` as band `band` after `step` steps; crash-safe at every point (see top).

        A band that already has `step` (resumed one step behind its neighbours) is left as it is:
        returns False then, True when it wrote.
        """
        record = self.band_record(band)
        if record["step"] >= step:
            return False
        if record["step"] != step - 1:
            raise RenderError(f"band {band} of store {self.url} is at step {record['step']}, cannot commit step {step}")
        slot = "b" if record["slot"] == "a" else "a"
        y0, y1 = self.bands[band]
        self._check_lease()
        array = self.group[f"latent_{slot}"]
        _retrying(self.url, f"writing band {band}", lambda y0=y0, y1=y1, rows=rows: array.__setitem__((slice(None), slice(y0, y1)), rows))
        prev = {"step": record["step"], "slot": record["slot"], "at": record.get("at")}
        new = {"step": step, "slot": slot, "at": time.time(), "prev": prev}
        data = json.dumps(new).encode()
        _retrying(self.url, f"recording band {band}", lambda: self.location.put(_record_key(band), data))  # all or nothing
        return True

    def commit_latent(self, latent: np.ndarray, step: int) -> None:
        """Every band of a whole latent after `step` steps (one process doing all bands' work)."""
        for band, (y0, y1) in enumerate(self.bands):
            self.commit_band(band, latent[:, y0:y1], step)

    def committed_step(self) -> int:
        """The step every band can be read at: the minimum committed step."""
        return min(int(self.band_record(b)["step"]) for b in range(len(self.bands)))

    def read_rows(self, y0: int, y1: int, step: int | None = None) -> tuple[np.ndarray, int]:
        """Rows [y0, y1) of the latent at one consistent step (the minimum committed, or `step`)."""
        bands = self.bands
        records = [self.band_record(b) for b in range(len(bands))]
        if step is None:
            step = min(int(r["step"]) for r in records)
        parts = []
        for (b0, b1), record in zip(bands, records):
            lo, hi = max(y0, b0), min(y1, b1)
            if lo >= hi:
                continue
            if record["step"] == step:
                slot = record["slot"]
            elif record["prev"] is not None and record["prev"]["step"] == step:
                slot = record["prev"]["slot"]
            else:
                raise RenderError(f"store {self.url} has no whole step {step} for rows {b0}-{b1} (its record: {record})")
            name = "noise" if slot == "noise" else f"latent_{slot}"
            parts.append(self.group[name][:, lo:hi])
        return np.concatenate(parts, axis=1), int(step)

    def read_latent(self) -> tuple[np.ndarray, int]:
        """The committed latent and the number of steps it has had (every band at that step)."""
        return self.read_rows(0, self.bands[-1][1])

    @property
    def decoded(self) -> bool:
        return bool(self.group.attrs.get("decoded"))

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(height, width) of the latent, in latent pixels."""
        return tuple(self.group["noise"].shape[1:])

    @property
    def scale(self) -> int:
        """Picture pixels per latent pixel (the VAE's factor)."""
        return self.group["image"].shape[0] // self.group["noise"].shape[1]

    def write_image(self, image: np.ndarray) -> None:
        """The whole picture at once (the version-1 `blend` decode), then `mark_decoded`."""
        self._check_lease()
        _retrying(self.url, "writing the picture", lambda: self.group["image"].__setitem__(Ellipsis, image))
        self.mark_decoded()

    def write_image_window(self, y: int, x: int, pixels: np.ndarray) -> None:
        """(h, w, 3) uint8 `pixels` at picture pixel (y, x): one decoded tile. A tile written twice
        (a decode resumed) gets the same bytes; only `mark_decoded` says the picture is whole."""
        self._check_lease()
        h, w = pixels.shape[:2]
        image = self.group["image"]
        _retrying(self.url, "writing the picture", lambda: image.__setitem__((slice(y, y + h), slice(x, x + w)), pixels))

    def mark_decoded(self) -> None:
        """`decoded` is set in one put of the group's metadata (no reducer writes it)."""
        _retrying(self.url, "marking the picture done", lambda: self.group.attrs.__setitem__("decoded", True))

    def write_source_alpha(self, alpha: np.ndarray) -> None:
        """An upscale's source alpha ((h, w) uint8, the source's size), before `write_noise`."""
        self._check_lease()
        array = self.group.create_array(
            "source_alpha", shape=alpha.shape, chunks=(IMAGE_CHUNK, IMAGE_CHUNK), dtype="uint8", overwrite=True
        )
        _retrying(self.url, "writing the source's alpha", lambda: array.__setitem__(Ellipsis, alpha))

    def source_alpha(self) -> np.ndarray | None:
        """The source alpha an upscale keeps, or None (a render from noise, or one that drops it)."""
        try:
            return self.group["source_alpha"][...]
        except KeyError:
            return None

    def read_image(self) -> np.ndarray:
        return self.group["image"][...]

    @property
    def image_shape(self) -> tuple[int, int]:
        """The picture's (height, width) in pixels."""
        height, width, _ = self.group["image"].shape
        return height, width

    def image_rows(self, y0: int, y1: int) -> np.ndarray:
        """Rows [y0, y1) of the picture, (n, W, 3) uint8: every output reads it through here, one
        band (`IMAGE_CHUNK` rows, a chunk row) at a time, so no process holds the picture whole."""
        return self.group["image"][y0:y1]

    def image_bands(self):
        """The picture's bands from the top: (n, W, 3) uint8, n = IMAGE_CHUNK but the last's."""
        height, _ = self.image_shape
        for y0 in range(0, height, IMAGE_CHUNK):
            yield self.image_rows(y0, min(height, y0 + IMAGE_CHUNK))

    def image_block(self, y0: int, x0: int, side: int) -> np.ndarray:
        """The picture's pixels in the `side`-px square at (y0, x0), clipped at its edges: (h, w, 3)
        uint8. The multiscale levels read the picture this way (multiscale.py), so what they hold
        does not grow with the canvas's width."""
        return self.group["image"][y0 : y0 + side, x0 : x0 + side]

    def write_level_block(self, level: int, y0: int, x0: int, block: np.ndarray) -> None:
        """(3, h, w) `block` into multiscale level `level` at (y0, x0); lease checked, retried."""
        self._check_lease()
        array = self.group[str(level)]
        _, h, w = block.shape
        _retrying(
            self.url, f"writing level {level} of the picture",
            lambda: array.__setitem__((slice(None), slice(y0, y0 + h), slice(x0, x0 + w)), block),
        )
