"""The render's memory: a zarr v3 group at any fsspec URL, versioned, crash-safe, never greedy.

Layout version 2 (`LAYOUT`; the group attribute `gigacanvas.layout` names it):
- arrays `noise` (C, H, W float32: the initial latent), `latent_a` and `latent_b` (C, H, W
  float32: two slots for the latent after some step), `image` (H, W, 3 uint8: the picture);
- group attributes `spec` (the pixel-deciding fields), `fingerprint` (the model's), `precision`,
  and `commit` = {"step": s, "slot": "noise" | "a" | "b", "decoded": bool}, which alone says
  which array holds the latent after `s` steps and whether `image` is whole;
- `lease-NNNNNN.json` keys beside the group (see lease.py).

Why slots: step s + 1 is written into the slot that `commit` does not name, then `commit` moves
to it in one put of the group's metadata (zarr writes it all or nothing: a temp file and a rename
on disk, one PUT on object storage). A crash anywhere leaves `commit` naming a whole latent, after
any number of crashes, because the slot being written is never the committed one.

What may be deleted: only gigacanvas's own keys (`OWN_NAMES`) in a folder that holds nothing else.
`inspect()` classifies a URL before anything is written, and the render refuses every other kind.
Layout 1 (arrays `latent`, `latent_next`, attributes `completed_step`/`next_step`) is recognised
as an older gigacanvas store: it can be replaced with --overwrite but not resumed. This module
and location.py are the only ones that import zarr or fsspec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.location import Location
from gigacanvas.storage.lease import PREFIX as LEASE_PREFIX
from gigacanvas.storage.lease import StoreLease

LAYOUT = 2
LATENT_CHUNK = 128  # latent pixels per chunk side: 1 MiB per 16-channel float32 chunk
IMAGE_CHUNK = 1024
SLOTS = ("a", "b")
OWN_NAMES = ("zarr.json", "noise", "latent_a", "latent_b", "image")
OLD_NAMES = ("zarr.json", "noise", "latent", "latent_next", "image")  # layout 1


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

    @property
    def usable(self) -> bool:
        return self.kind in ("new", "empty", "ours", "ours-unfinished")


class LatentStore:
    """One render's arrays and attributes; see the module docstring for the layout."""

    def __init__(self, url: str):
        self.url = url
        self.location = Location(url, self._options(url))
        self.protocol = self.location.protocol
        self._group = None
        self.lease: StoreLease | None = None

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
        if not names:
            return StoreState("empty")
        group = self._open("r") if "zarr.json" in names else None
        marker = dict(group.attrs).get("gigacanvas") if group is not None else None
        if isinstance(marker, dict) and isinstance(marker.get("layout"), int):
            layout = marker["layout"]
            if layout > LAYOUT:
                return StoreState("newer", layout)
            others = tuple(n for n in names if n not in OWN_NAMES) or self._not_zarr(names)
            if others:
                return StoreState("foreign", layout, others)
            return StoreState("ours" if "commit" in group.attrs else "ours-unfinished", layout)
        if group is not None and "spec" in group.attrs and "completed_step" in group.attrs:
            others = tuple(n for n in names if n not in OLD_NAMES) or self._not_zarr(names)
            return StoreState("foreign", 1, others) if others else StoreState("old", 1)
        return StoreState("foreign", None, names)

    def _not_zarr(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Entries below our own names that zarr did not write (a user's file in `image/`, a file
        named `noise`): a store holding them is not only ours, and `clear()` would delete them."""
        found = []
        for name in names:
            kind = self.location.kind(name)
            if name == "zarr.json":
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
        for name in OLD_NAMES if state.kind == "old" else OWN_NAMES:
            self.location.remove(name)
        for name in self.location.names(""):
            if _is_temp(name):
                self.location.remove(name)

    def create(self, spec: dict, fingerprint: str, channels: int, height: int, width: int, scale: int, **attrs: Any) -> None:
        """A fresh store at a URL that `inspect()` found new, empty, or cleared of our own keys."""
        import zarr

        self._group = None
        try:
            # overwrite=False: fail rather than replace if a group appeared since the check (the lease
            # beside it does not count). The marker is in the group's first metadata write, so a
            # crash from here on leaves 'ours-unfinished'.
            group = zarr.create_group(
                store=self.url,
                overwrite=False,
                zarr_format=3,
                storage_options=self._options(self.url),
                attributes={"gigacanvas": {"layout": LAYOUT}, "spec": spec, "fingerprint": fingerprint, **attrs},
            )
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"store {self.url} cannot be created ({exc.__class__.__name__}: {exc})") from exc
        # Latents are noise-like floats: zstd saves ~6% and costs most of a step's write time.
        latent = dict(
            shape=(channels, height, width), chunks=(channels, LATENT_CHUNK, LATENT_CHUNK), dtype="float32", compressors=None
        )
        for name in ("noise", "latent_a", "latent_b"):
            group.create_array(name, **latent)
        group.create_array("image", shape=(height * scale, width * scale, 3), chunks=(IMAGE_CHUNK, IMAGE_CHUNK, 3), dtype="uint8")
        # no `commit` yet: until write_noise, the store is 'ours-unfinished' and is simply recreated
        self._group = group

    def set_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(attrs)

    def _commit(self, **record: Any) -> None:
        if self.lease is not None:
            self.lease.check()
        self.group.attrs["commit"] = record  # one all-or-nothing put of the group's metadata

    def commit_record(self) -> dict[str, Any]:
        return dict(self.group.attrs["commit"])

    def write_noise(self, noise: np.ndarray) -> None:
        if self.lease is not None:
            self.lease.check()
        self.group["noise"][...] = noise
        self._commit(step=0, slot="noise", decoded=False)

    def read_noise(self) -> np.ndarray:
        return self.group["noise"][...]

    def commit_latent(self, latent: np.ndarray, step: int) -> None:
        """Record `latent` as the state after `step` steps; crash-safe at every point (see top)."""
        current = self.commit_record()
        slot = "b" if current["slot"] == "a" else "a"
        if self.lease is not None:
            self.lease.check()
        self.group[f"latent_{slot}"][...] = latent
        self._commit(step=step, slot=slot, decoded=False)

    def read_latent(self) -> tuple[np.ndarray, int]:
        """The committed latent and the number of steps it has had."""
        record = self.commit_record()
        name = "noise" if record["slot"] == "noise" else f"latent_{record['slot']}"
        return self.group[name][...], int(record["step"])

    @property
    def decoded(self) -> bool:
        return bool(self.commit_record().get("decoded"))

    def write_image(self, image: np.ndarray) -> None:
        if self.lease is not None:
            self.lease.check()
        self.group["image"][...] = image
        self._commit(**{**self.commit_record(), "decoded": True})

    def read_image(self) -> np.ndarray:
        return self.group["image"][...]
