"""A store's place: the few file operations the store and its lease need, on any fsspec URL.

Zarr reads and writes the arrays; this module does what zarr does not: look at what already is at
the URL before anything is written there (so gigacanvas never deletes what is not its own), write
small keys all-or-nothing, and create a key only if it does not exist yet (the lease's atomic
step). On a local disk that is `os.link` of a finished temp file (fails if the target exists) and
`os.replace`; on object storage a single put is already all-or-nothing and `pipe_file(mode=
"create")` is the conditional put where the backend has one. This is the only module besides
`store.py` that imports fsspec.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from gigacanvas.errors import UsageError


LOCAL_PROTOCOLS = ("file", "local")


@dataclass(frozen=True)
class Contents:
    """What is at a URL before gigacanvas writes there."""

    exists: bool
    is_file: bool
    names: tuple[str, ...]  # the entries of a folder (or prefix), sorted; empty for a file


def is_url(text: str) -> bool:
    """Whether `text` names a place by URL (`s3://...`, `file://...`) rather than as a path."""
    return "://" in text


def local_url_path(url: str) -> str:
    """The path a file:// or local:// URL names (a plain path as it is)."""
    for protocol in LOCAL_PROTOCOLS:
        url = url.removeprefix(f"{protocol}://")
    return url


def check_protocol(url: str, what: str = "store") -> str:
    import fsspec
    from fsspec.core import split_protocol

    if not url.strip():
        raise UsageError(f"{what} is empty ({url!r}); pass a path or a URL")
    if "::" in url:
        raise UsageError(f"{what} {url} chains filesystems ('::'), which gigacanvas does not use; pass the plain URL")
    protocol = split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise UsageError(f"{what} {url} uses an unknown protocol '{protocol}'; use a path or file://, memory://, s3://, gs://") from exc
    except ImportError as exc:
        raise UsageError(f"{what} {url} needs a package for '{protocol}' ({exc}); install it and retry") from exc
    return protocol


class Location:
    """The folder (or object prefix) of one store URL (or, with `what`, of another object)."""

    def __init__(self, url: str, options: dict | None = None, what: str = "store"):
        import fsspec

        self.url = url
        self.protocol = check_protocol(url, what)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **(options or {}))
        except Exception as exc:  # noqa: BLE001 - a bad URL or missing credentials: one line
            raise UsageError(f"{what} {url} cannot be opened ({exc.__class__.__name__}: {first_line(exc)})") from exc
        self.root = self.root.rstrip("/") or "/"
        self.local = self.protocol in LOCAL_PROTOCOLS

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def contents(self) -> Contents:
        """What is there now; a path we may not even look into is refused, not guessed."""
        try:
            if not self.fs.exists(self.root):
                return Contents(False, False, ())
            if self.fs.isfile(self.root):
                return Contents(True, True, ())
            names = sorted({p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)})
        except Exception as exc:  # noqa: BLE001 - OSError, or a backend's own (botocore's NoCredentialsError, ...)
            raise UsageError(f"store {self.url} cannot be inspected ({exc.__class__.__name__}: {first_line(exc)})") from exc
        return Contents(True, False, tuple(n for n in names if n))

    def read(self, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._key(name))
        except FileNotFoundError:
            return None

    def names(self, prefix: str) -> list[str]:
        """Entries of the root whose name starts with `prefix`."""
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return []
        names = (p.rstrip("/").rsplit("/", 1)[-1] for p in entries)
        return sorted(n for n in names if n.startswith(prefix))

    def kind(self, name: str) -> str:
        """'file', 'dir' or 'missing' for an entry of the root."""
        key = self._key(name)
        if self.fs.isfile(key):
            return "file"
        return "dir" if self.fs.isdir(key) else "missing"

    def files_under(self, name: str) -> list[str]:
        """Every file below the entry `name`, as paths relative to it."""
        key = self._key(name)
        return sorted(p[len(key) + 1 :] for p in self.fs.find(key) if p.startswith(key + "/"))

    def _whole_temp(self, key: str, data: bytes) -> str:
        """A finished temp file beside `key` holding `data` (local disks only)."""
        os.makedirs(self.root, exist_ok=True)
        tmp = f"{key}.{uuid.uuid4().hex[:12]}.partial"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return tmp

    def put(self, name: str, data: bytes) -> None:
        """Replace `name` with `data` all or nothing: a reader sees the old bytes or the new."""
        key = self._key(name)
        if not self.local:
            self.fs.pipe_file(key, data)
            return
        tmp = self._whole_temp(key, data)
        try:
            os.replace(tmp, key)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def create(self, name: str, data: bytes) -> bool:
        """Write `name` only if nothing is there; False if it already was (someone else won)."""
        key = self._key(name)
        if not self.local:
            try:
                self.fs.pipe_file(key, data, mode="create")
            except FileExistsError:
                return False
            return True
        tmp = self._whole_temp(key, data)
        try:
            os.link(tmp, key)  # atomic, fails if `key` exists, and the file is already whole
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def make_root(self) -> bool:
        """Create the store's folder if it is missing; True if this call created it."""
        if not self.local:
            return False  # object storage has no folders: the first key makes the prefix
        try:
            os.makedirs(self.root)
        except FileExistsError:
            return False
        except OSError as exc:
            raise UsageError(f"store {self.url} cannot be created ({exc.strerror or exc.__class__.__name__})") from exc
        return True

    def remove(self, name: str) -> None:
        key = self._key(name)
        try:
            if self.fs.isdir(key):
                self.fs.rm(key, recursive=True)
            else:
                self.fs.rm_file(key)
        except FileNotFoundError:
            pass

    def remove_root_if_empty(self) -> None:
        if self.local:
            try:
                os.rmdir(self.root)
            except OSError:
                pass
        elif not self.contents().names:
            try:
                self.fs.rmdir(self.root)
            except (OSError, NotImplementedError):
                pass


def first_line(exc: BaseException) -> str:
    """An exception's first line, bounded, for a one-line error (its class name if it has no text)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__
