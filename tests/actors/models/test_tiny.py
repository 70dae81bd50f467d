"""`demo-model`: refused up front where it could not write, and all or nothing when it writes."""

import errno
import os

import pytest

from gigacanvas.actors.models import tiny
from gigacanvas.actors.models.sd3 import tiny as sd3_tiny
from gigacanvas.cluster.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_onto_an_existing_file_is_refused(tmp_path, capsys):
    (tmp_path / "model").write_text("x")
    code, err = _run(capsys, "demo-model", str(tmp_path / "model"))
    assert (code, err) == (2, f"gigacanvas: error: demo-model {tmp_path}/model is a file, not a folder; choose a new folder\n")
    assert (tmp_path / "model").read_text() == "x"


def test_under_an_existing_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = _run(capsys, "demo-model", str(tmp_path / "file" / "model"))
    assert code == 2
    assert err == f"gigacanvas: error: demo-model {tmp_path}/file/model: {tmp_path}/file is a file, not a folder; choose a path in a folder\n"


def test_into_a_system_file_is_refused_even_for_root(capsys):
    code, err = _run(capsys, "demo-model", "/etc/passwd/model")
    assert code == 2 and "/etc/passwd is a file, not a folder" in err


def test_a_name_too_long_is_refused(tmp_path, capsys):
    code, err = _run(capsys, "demo-model", str(tmp_path / ("m" * 300)))
    assert code == 2 and "is 300 bytes long, more than the" in err and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (tests/storage/test_atomic.py fakes EROFS)")
def test_into_an_unwritable_folder_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        code, err = _run(capsys, "demo-model", str(locked / "model"))
    finally:
        locked.chmod(0o755)
    assert code == 2 and "(Permission denied); choose a writable folder" in err


def test_a_failed_build_leaves_nothing_and_names_the_folder(tmp_path, monkeypatch):
    class FullDisk:
        def save_pretrained(self, path, safe_serialization=True):
            (path / "vae").mkdir(parents=True, exist_ok=True)
            (path / "model_index.json").write_text("{}")  # a half-written model
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(sd3_tiny, "build_tiny_pipeline", lambda seed=0: FullDisk())
    with pytest.raises(OSError) as caught:
        tiny.build_tiny_model(tmp_path / "model")
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(tmp_path / "model"))
    assert list(tmp_path.iterdir()) == []  # no folder a later run would take for a whole model


def test_the_built_in_model_in_an_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    from gigacanvas.actors.loading import tiny_model_path
    from gigacanvas.errors import UsageError

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GIGACANVAS_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(UsageError, match=r"^the built-in tiny model cannot be written to .*/file/cache/tiny-sd3 \(Not a directory\); set GIGACANVAS_CACHE to a writable folder"):
        tiny_model_path()
