"""`convert` refuses an output it could not write before it reads the model, each as one line."""

import os
from pathlib import Path

import pytest

from gigacanvas.actors.convert import convert_transformer
from gigacanvas.cluster.cli import main
from gigacanvas.errors import UsageError


def _cases(tmp_path):
    (tmp_path / "taken.safetensors").mkdir()
    (tmp_path / "file").write_text("x")
    long_name = "t" * 288 + ".safetensors"  # 300 characters
    return {
        "folder": (tmp_path, f"output {tmp_path} is a directory, not a file; name a file inside it"),
        "folder named like a file": (
            tmp_path / "taken.safetensors",
            f"output {tmp_path}/taken.safetensors is a directory, not a file; name a file inside it",
        ),
        "missing folder": (
            tmp_path / "no" / "t.safetensors",
            f"output {tmp_path}/no/t.safetensors: folder {tmp_path}/no does not exist; create it first",
        ),
        "file in the way": (
            tmp_path / "file" / "t.safetensors",
            f"output {tmp_path}/file/t.safetensors: {tmp_path}/file is a file, not a folder; choose a path in a folder",
        ),
        "long name": (
            tmp_path / long_name,
            (
                f"output {tmp_path}/{long_name}: the name {long_name[:40]}... is 300 bytes long, more than the "
                f"{os.pathconf(tmp_path, 'PC_NAME_MAX')} this filesystem allows; choose a shorter name"
            ),
        ),
    }


@pytest.mark.parametrize("case", ["folder", "folder named like a file", "missing folder", "file in the way", "long name"])
def test_unwritable_outputs_are_refused_before_the_model_is_read(tmp_path, case, capsys):
    dst, message = _cases(tmp_path)[case]
    before = sorted(os.listdir(tmp_path))
    # The source does not exist: the output is checked first, so its error is the one reported.
    with pytest.raises(UsageError) as caught:
        convert_transformer(str(tmp_path / "no-model"), str(dst))
    assert str(caught.value) == message
    assert main(["convert", str(tmp_path / "no-model"), str(dst)]) == 2
    assert capsys.readouterr().err == f"gigacanvas: error: {message}\n"
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits (tests/storage/test_atomic.py fakes EROFS)")
def test_an_unwritable_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(UsageError, match=r"cannot create files in .*locked \(Permission denied\); choose a writable folder$"):
            convert_transformer(str(tmp_path / "no-model"), str(locked / "t.safetensors"))
    finally:
        locked.chmod(0o755)


def test_an_output_inside_the_model_folder_is_refused(tiny_model, tmp_path):
    """A file in transformer/ would become one more shard of the very model it came from."""
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model, copy)
    dst = copy / "transformer" / "fp8.safetensors"
    with pytest.raises(UsageError, match=r"^output .*/fp8.safetensors is inside the model folder .*/m; write it somewhere else$"):
        convert_transformer(str(copy), str(dst))
    assert not dst.exists()


def test_a_full_disk_names_the_output(tiny_model, tmp_path, monkeypatch, capsys):
    """safetensors reports ENOSPC as a SafetensorError without a path; the user sees the output's."""
    import safetensors.torch

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    dst = tmp_path / "t.safetensors"
    with pytest.raises(OSError) as caught:
        convert_transformer(tiny_model, str(dst), "bf16")
    assert (caught.value.errno, caught.value.filename) == (28, str(dst))
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temp file
    assert main(["convert", tiny_model, str(dst), "--precision", "bf16"]) != 0  # the CLI's handler words it
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(dst) in err and "no space left on device" in err.lower()
