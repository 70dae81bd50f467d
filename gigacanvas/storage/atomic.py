"""All-or-nothing local file writes: a temp file in the target's folder, fsync, then rename.

A reader (or a crash) sees the old file or the new one, never half of one. The temp file gets the
permissions a plain `open()` would give (mkstemp's are owner-only).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yields a temp path to write; on success it replaces `dst`, on failure it is removed."""
    dst = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
