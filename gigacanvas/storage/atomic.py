"""All-or-nothing local file writes, and the checks that let a bad output path fail before work.

`atomic_path` writes through a temp file in the target's folder, fsyncs, then renames: a reader
(or a crash) sees the old file or the new one, never half of one. The temp file gets the
permissions a plain `open()` would give (mkstemp's are owner-only) and a name that stays within
the filesystem's name limit however long the target's name is. A failed write is re-raised as an
`OSError` naming the target, not the temp file, so "No space left on device" says where.

`check_writable_file` and `check_writable_folder` answer "could we write there?" up front,
creating nothing but a probe file that is removed at once, so a render or a conversion that could
never save its result is refused before it spends minutes of work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gigacanvas.errors import UsageError

_TEMP_NAME_BYTES = 200  # of the target's name kept in a temp name: ".{name}.XXXXXXXX.tmp" <= 255
# How Rust-backed writers (safetensors) spell an OS error: "... (os error 28)" or "Os { code: 28, ..."
_RUST_OS_ERROR = re.compile(r"os error (\d+)|Os \{ code: (\d+)")


def _clip(name: str, limit: int) -> str:
    """`name` cut to at most `limit` bytes on disk, never inside a character."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def as_os_error(exc: BaseException, path: str | Path) -> OSError | None:
    """`exc` as an OSError naming `path`, if it is or reports an OS error; else None.

    Writers fail with the temp file's name, no name (fsync), or, for safetensors, a
    `SafetensorError` whose text holds the errno; users need the path they asked for.
    """
    if isinstance(exc, OSError):
        code, text = exc.errno, exc.strerror
    else:
        found = _RUST_OS_ERROR.search(str(exc))
        if not found:
            return None
        code = int(found.group(1) or found.group(2))
        text = os.strerror(code)
    if code is None:
        return None
    return OSError(code, text or os.strerror(code), str(path))  # OSError() picks the subclass


@contextlib.contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yields a temp path to write; on success it replaces `dst`, on failure it is removed."""
    dst = Path(dst)
    prefix, tmp = f".{_clip(dst.name, _TEMP_NAME_BYTES)}.", None
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=dst.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        named = as_os_error(exc, dst)
        # Only errors about this write are renamed; an OSError about another file keeps its name.
        about = getattr(exc, "filename", None)
        if named is not None and (about is None or os.path.basename(str(about)).startswith(prefix) or about == str(dst)):
            raise named from exc
        raise


def _kind(path: Path, what: str, target: Path) -> str | None:
    """"dir", "file" or None (nothing there); a path we may not even look at is refused."""
    try:
        return "dir" if path.is_dir() else "file" if path.exists() else None
    except OSError as exc:  # EACCES on a folder above: pathlib only swallows ENOENT and friends
        if exc.errno == errno.ENAMETOOLONG:
            return None  # nothing can be there; the name check says why
        raise UsageError(f"{what} {target}: cannot look at {path} ({exc.strerror}); choose another place") from None


def _existing_folder(path: Path, what: str, target: Path) -> Path:
    """The nearest folder at or above `path` that exists; a file in the way is refused."""
    while True:
        kind = _kind(path, what, target)
        if kind == "dir":
            return path
        if kind == "file":
            raise UsageError(f"{what} {target}: {path} is a file, not a folder; choose a path in a folder")
        if path.parent == path:  # only a vanished working directory gets here
            raise UsageError(f"{what} {target}: no folder above it exists")
        path = path.parent


def _check_name(name: str, folder: Path, what: str, target: Path) -> None:
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    size = len(os.fsencode(name))
    if limit > 0 and size > limit:
        raise UsageError(
            f"{what} {target}: the name {name[:40]}... is {size} bytes long, more than the {limit} "
            "this filesystem allows; choose a shorter name"
        )


def _probe(folder: Path, what: str, target: Path) -> None:
    """Create and remove a hidden file in `folder`: the one honest test of writability.

    Permission bits lie for root, ACLs and read-only mounts; a real create does not.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".gigacanvas-probe-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{what} {target}: cannot create files in {folder} ({exc.strerror}); choose a writable folder") from None
    os.close(fd)
    os.unlink(probe)


def check_writable_file(path: str | Path, what: str) -> Path:
    """`path` (user-expanded) if a file could be written there atomically; else a UsageError.

    `what` names the option in messages ("out", "output"). Refuses a directory, a missing
    folder or a file in the folder's place, a name longer than the filesystem allows, and a
    folder we cannot create files in. `path` itself is never touched.
    """
    target = Path(path).expanduser()
    if _kind(target, what, target) == "dir":
        raise UsageError(f"{what} {target} is a directory, not a file; name a file inside it")
    folder = _existing_folder(target.parent, what, target)
    if folder != target.parent:
        raise UsageError(f"{what} {target}: folder {target.parent} does not exist; create it first")
    _check_name(target.name, folder, what, target)
    _probe(folder, what, target)
    return target


def check_writable_folder(path: str | Path, what: str) -> Path:
    """`path` (user-expanded) if a folder could be made there and filled; else a UsageError.

    Missing folders above it are fine (they will be created); a file in the way, a name too long
    or a place we cannot create files in is refused. Nothing is created.
    """
    target = Path(path).expanduser()
    if _kind(target, what, target) == "file":
        raise UsageError(f"{what} {target} is a file, not a folder; choose a new folder")
    folder = _existing_folder(target, what, target)
    for name in target.relative_to(folder).parts:
        _check_name(name, folder, what, target)
    _probe(folder, what, target)
    return target
