"""Remote files (an fsspec URL: a folder under a prefix, or one file) copied once into a local cache.

A cache entry is `ROOT/KEY/`, a finished copy, used whole or not at all: a download goes into
`ROOT/KEY.partial-RANDOM/`, each file's size is checked against the listing, and only then is the
folder renamed to `ROOT/KEY` (one atomic rename). A crash mid-download leaves a `.partial-` folder
that nothing reads and the next fetch of that key removes. Processes of one machine that fetch the
same key at once (the render's actors on one node) take `ROOT/KEY.lock` (filelock) in turn: the
first downloads, the others find the finished copy.

The key is a digest of the URL and its listing (each object's name, size and version: the ETag on
S3 and Azure, md5Hash or generation on GCS, mtime where that is all there is), not the content
fingerprint. The fingerprint hashes every byte, so it is known only after a download and cannot
say whether a copy is already here; the listing costs one LIST, needs no download, and changes
when any object is rewritten (a new ETag), so a changed model gets a new entry instead of a stale
copy. A caller that was handed a key (an actor, from the driver's plan) finds the entry without
touching the network at all, and a listing that no longer gives that key means the objects changed
since the key was taken. The key promises no content: callers check the copy's fingerprint.

Hand-written because fsspec's own caches (`filecache::`, `simplecache::`) keep files one by one,
keyed by path, with no lock across processes and no all-or-nothing folder; fsspec does the
listing and the (concurrent) download, filelock the lock.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from gigacanvas.errors import GigacanvasError, RenderError, UsageError
from gigacanvas.storage.location import LOCAL_PROTOCOLS, check_protocol, first_line

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
# The fields of an fsspec info dict that change when an object is rewritten, by backend.
VERSION_FIELDS = ("ETag", "etag", "md5Hash", "generation", "crc32c", "mtime", "LastModified", "last_modified", "created")


@dataclass(frozen=True)
class Listing:
    """What is at a URL now: its files (relative name -> (size, version)) and the cache key."""

    url: str
    single: bool  # the URL names one file, not a folder
    files: dict[str, tuple[int, str]]
    key: str

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values())


def remote_protocol(url: str) -> str | None:
    """The protocol of a URL that names a remote place (`s3`, `gs`, ...); None for a local path or
    file:// URL. A URL no process but this one can read (memory://) is refused."""
    if "://" not in url:
        return None
    protocol = check_protocol(url, "model")
    if protocol in LOCAL_PROTOCOLS:
        return None
    if protocol == "memory":
        raise UsageError(f"model {url} would live in this process only; the actors cannot read memory://")
    return protocol


def _filesystem(url: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()  # a listing from earlier in this process may be stale
    return fs, root.rstrip("/")


def _version(info: dict) -> str:
    return next((str(info[f]) for f in VERSION_FIELDS if info.get(f) is not None), "")


def _slug(url: str) -> str:
    """A readable start for the key: the URL's last name, in safe characters."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40].lstrip(".") or "model"


def list_remote(url: str, patterns: Iterable[str], what: str = "model") -> Listing:
    """List `url` (one LIST; no file is read) and the cache key of what is there now.

    A folder's files are those whose relative name matches one of `patterns` (fnmatch, as
    huggingface_hub's allow_patterns), hidden names skipped.
    """
    patterns = tuple(patterns)
    try:
        fs, root = _filesystem(url)
        if not fs.exists(root):
            raise UsageError(f"{what} {url} does not exist")
        single = fs.isfile(root)
        if single:
            found = {root.rsplit("/", 1)[-1]: fs.info(root)}
        else:
            found = {p[len(root) + 1 :]: info for p, info in fs.find(root, detail=True).items() if p.startswith(root + "/")}
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, or a backend's own (botocore's NoCredentialsError, ...)
        denied = isinstance(exc, PermissionError) or "Credentials" in exc.__class__.__name__
        hint = "; every machine of the render needs its own credentials that may read it" if denied else ""
        raise UsageError(f"{what} {url} cannot be listed ({exc.__class__.__name__}: {first_line(exc)}){hint}") from None
    files = {
        name: (int(info.get("size") or 0), _version(info))
        for name, info in sorted(found.items())
        if single
        or (
            info.get("type", "file") == "file"
            and not any(part.startswith(".") for part in name.split("/"))
            and any(fnmatch.fnmatch(name, p) for p in patterns)
        )
    }
    if not files:
        raise UsageError(f"{what} {url} holds no files gigacanvas reads ({', '.join(patterns)})")
    digest = hashlib.sha256(json.dumps([url.rstrip("/"), single, files], sort_keys=True).encode()).hexdigest()
    return Listing(url, single, files, f"{_slug(url)}-{digest[:16]}")


def _download(fs, pairs: list[tuple[str, str]]) -> None:
    """Copy each remote path to its local path (concurrently where the backend can)."""
    fs.get([r for r, _ in pairs], [lp for _, lp in pairs])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _entry_path(entry: Path, listing_single: bool) -> Path:
    """The path callers use: the entry folder, or for a single file the one file inside it."""
    if not listing_single:
        return entry
    return next(p for p in entry.iterdir() if not p.name.startswith("."))


def cached(root: Path, key: str) -> Path | None:
    """The finished copy of `key` in `root`, if there is one."""
    entry = root / key
    if not entry.is_dir():
        return None
    single = json.loads((entry / ".gigacanvas-fetch.json").read_text()).get("single", False)
    return _entry_path(entry, single)


def fetch(
    url: str,
    root: Path,
    patterns: Iterable[str],
    *,
    key: str | None = None,
    check: Callable[[Listing], None] | None = None,
    what: str = "model",
    notify: Callable[[str], None] = _stderr,
) -> tuple[Path, str]:
    """The local copy of `url` in the cache folder `root` and its key, downloading it if needed.

    With `key` (taken by another process's `list_remote`) a finished entry is used without any
    network access, and a download whose listing gives another key is refused. `check` may refuse
    a listing before anything is downloaded.
    """
    from filelock import FileLock, Timeout

    if key is not None and (found := _cached_or_none(root, key)) is not None:
        return found, key
    listing = list_remote(url, patterns, what)
    if key is not None and listing.key != key:
        raise UsageError(f"{what} {url} changed since the render was planned (its objects' listing differs); render again")
    if check is not None:
        check(listing)
    entry = root / listing.key
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f"{listing.key}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        notify(f"gigacanvas: waiting for another process fetching {url} into {entry}")
        lock.acquire()
    try:
        if (found := _cached_or_none(root, listing.key)) is not None:
            return found, listing.key
        for stale in root.glob(f"{listing.key}.partial-*"):  # a crashed download's; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        size = f"{listing.size / 2**30:.1f} GiB" if listing.size >= 2**30 else f"{listing.size / 2**20:.1f} MiB"
        notify(f"gigacanvas: fetching {url} ({size}, {len(listing.files)} file{'s' if len(listing.files) != 1 else ''}) into {entry}, once")
        _fetch_into(url, listing, entry)
        return _entry_path(entry, listing.single), listing.key
    finally:
        lock.release()


def _cached_or_none(root: Path, key: str) -> Path | None:
    try:
        return cached(root, key)
    except (OSError, ValueError, StopIteration):
        return None  # not a finished entry of ours: fetched again (under the lock)


def _fetch_into(url: str, listing: Listing, entry: Path) -> None:
    """Download `listing` into a temp folder beside `entry`, check sizes, rename it to `entry`."""
    tmp = entry.with_name(f"{entry.name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        fs, remote = _filesystem(url)
        pairs = []
        for name in listing.files:
            local = tmp / name
            local.parent.mkdir(parents=True, exist_ok=True)
            pairs.append((remote if listing.single else f"{remote}/{name}", str(local)))
        _download(fs, pairs)
        for name, (size, _) in listing.files.items():
            got = (tmp / name).stat().st_size
            if got != size:
                raise RenderError(f"model {url}: {name} came down with {got} of {size} bytes; try again")
        (tmp / ".gigacanvas-fetch.json").write_text(json.dumps({"url": url, "single": listing.single, "files": listing.files}))
        os.rename(tmp, entry)  # all or nothing: `entry` does not exist (we hold its lock)
    except GigacanvasError:
        raise
    except Exception as exc:  # noqa: BLE001 - the local disk's OSError, or a backend's own (botocore, aiohttp)
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS and str(exc.filename or "").startswith(str(tmp)):
            raise OSError(exc.errno, exc.strerror, str(entry.parent)) from None  # the cache's disk: name it
        kind = UsageError if isinstance(exc, PermissionError) else RenderError  # denied: the user's to fix
        raise kind(f"model {url} could not be downloaded ({exc.__class__.__name__}: {first_line(exc)})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
