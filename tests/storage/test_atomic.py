"""Atomic writes with long names and failing disks; up-front checks of output paths."""

import errno
import os
import re
import resource
import signal
import tempfile

import pytest

from gigacanvas.errors import UsageError
from gigacanvas.storage.atomic import (
    as_os_error,
    atomic_path,
    check_writable_file,
    check_writable_folder,
)

ROOT = os.geteuid() == 0  # permission bits do not stop root; read-only mounts and files in the way do


def _limit(folder) -> int:
    return os.pathconf(folder, "PC_NAME_MAX")


@pytest.mark.parametrize("char", ["a", "é"])
def test_a_name_at_the_filesystem_limit_writes(tmp_path, char):
    """`.{name}.XXXXXXXX.tmp` would pass 255 bytes; the temp name is bounded instead."""
    name = char * (_limit(tmp_path) // len(char.encode()))
    with atomic_path(tmp_path / name) as tmp:
        assert len(os.fsencode(tmp.name)) <= _limit(tmp_path)
        tmp.write_bytes(b"new")
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == b"new"


def test_a_failed_write_names_the_target_not_the_temp_file(tmp_path):
    dst = tmp_path / "out.png"
    with pytest.raises(OSError) as caught, atomic_path(dst) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(dst))
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_keeps_its_name(tmp_path):
    with pytest.raises(FileNotFoundError) as caught, atomic_path(tmp_path / "out.png"):
        open(tmp_path / "source.txt").close()
    assert caught.value.filename == str(tmp_path / "source.txt")


@pytest.mark.parametrize(
    "text",
    [
        "Error while serializing: I/O error: No space left on device (os error 28)",  # safetensors 0.5+
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })',
    ],
)
def test_rust_writer_errors_become_os_errors(tmp_path, text):
    named = as_os_error(RuntimeError(text), tmp_path / "t.safetensors")
    assert (named.errno, named.filename, named.strerror) == (errno.ENOSPC, str(tmp_path / "t.safetensors"), os.strerror(28))
    assert as_os_error(RuntimeError("shape mismatch"), tmp_path) is None


def test_safetensors_hitting_a_size_limit_is_an_os_error_naming_the_file(tmp_path):
    """A real failing write through safetensors' Rust writer (a file-size limit stands in for a full disk)."""
    import torch
    from safetensors.torch import save_file

    dst = tmp_path / "t.safetensors"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError) as caught, atomic_path(dst) as tmp:
            save_file({"w": torch.zeros(100_000)}, str(tmp))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert (caught.value.errno, caught.value.filename) == (errno.EFBIG, str(dst))
    assert list(tmp_path.iterdir()) == []


def test_writable_file_is_returned_and_nothing_is_touched(tmp_path):
    (tmp_path / "out.png").write_bytes(b"old")
    assert check_writable_file(tmp_path / "out.png", "out") == tmp_path / "out.png"
    assert check_writable_file(str(tmp_path / "new.png"), "out") == tmp_path / "new.png"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"] and (tmp_path / "out.png").read_bytes() == b"old"


def test_file_checks_refuse_with_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = {
        tmp_path: f"out {tmp_path} is a directory, not a file; name a file inside it",
        tmp_path / "no" / "x.png": f"out {tmp_path / 'no' / 'x.png'}: folder {tmp_path / 'no'} does not exist; create it first",
        tmp_path / "file" / "x.png": f"out {tmp_path / 'file' / 'x.png'}: {tmp_path / 'file'} is a file, not a folder",
        tmp_path / "file" / "a" / "x.png": f"out {tmp_path / 'file' / 'a' / 'x.png'}: {tmp_path / 'file'} is a file, not a folder",
    }
    for path, message in cases.items():
        with pytest.raises(UsageError, match="^" + re.escape(message)):
            check_writable_file(path, "out")
    name = "n" * 300 + ".png"
    with pytest.raises(UsageError, match=f"is 304 bytes long, more than the {_limit(tmp_path)} this filesystem allows; choose a shorter name"):
        check_writable_file(tmp_path / name, "out")


def test_a_path_under_a_system_file_is_refused_even_for_root():
    with pytest.raises(UsageError, match="^out /etc/passwd/x.png: /etc/passwd is a file, not a folder"):
        check_writable_file("/etc/passwd/x.png", "out")


@pytest.mark.skipif(ROOT, reason="root writes through permission bits; see the read-only case below")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(UsageError, match=f"cannot create files in {re.escape(str(locked))} \\(Permission denied\\); choose a writable folder"):
            check_writable_file(locked / "x.png", "out")
        with pytest.raises(UsageError, match="Permission denied"):
            check_writable_folder(locked / "model", "demo-model")
    finally:
        locked.chmod(0o755)


def test_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    """What a read-only mount does to the probe (faked: mounting needs privileges tests lack)."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".probe"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(UsageError, match=f"^out {re.escape(str(tmp_path / 'x.png'))}: cannot create files in {re.escape(str(tmp_path))} \\(Read-only file system\\)"):
        check_writable_file(tmp_path / "x.png", "out")


def test_folder_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_writable_folder(tmp_path / "a" / "b", "demo-model") == tmp_path / "a" / "b"
    assert check_writable_folder(tmp_path, "demo-model") == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing created
    with pytest.raises(UsageError, match=f"^demo-model {re.escape(str(tmp_path / 'file'))} is a file, not a folder; choose a new folder$"):
        check_writable_folder(tmp_path / "file", "demo-model")
    with pytest.raises(UsageError, match="is a file, not a folder; choose a path in a folder"):
        check_writable_folder(tmp_path / "file" / "model", "demo-model")
    with pytest.raises(UsageError, match="bytes long, more than"):
        check_writable_folder(tmp_path / ("d" * 300) / "model", "demo-model")
