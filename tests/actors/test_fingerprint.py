"""Fingerprints cover every byte the pipeline loads, and hash each file version once."""

import json
import os
import shutil

import pytest

from gigacanvas.actors import fingerprint as fp

MIB = 1 << 20


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder and a count of whole-file hashes."""
    monkeypatch.setenv("GIGACANVAS_CACHE", str(tmp_path / "cache"))
    hashed = []
    real = fp._hash_file

    def counting(path):
        hashed.append(path.name)
        return real(path)

    monkeypatch.setattr(fp, "_hash_file", counting)
    return tmp_path / "cache" / fp.CACHE_NAME, hashed


def _model(root, weights: bytes):
    (root / "transformer").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    (root / "transformer" / "config.json").write_text('{"in_channels": 16}')
    (root / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return root


def _weights(root):
    return root / "transformer" / "diffusion_pytorch_model.safetensors"


def test_fine_tunes_differing_only_in_the_middle_differ(tmp_path, cache):
    data = bytearray(os.urandom(3 * MIB))
    a = fp.fingerprint(_model(tmp_path / "a", bytes(data)), ["transformer"])
    data[len(data) // 2] ^= 0xFF  # outside the first and the last MiB
    b = fp.fingerprint(_model(tmp_path / "b", bytes(data)), ["transformer"])
    assert a != b
    assert len(a) == 16 and int(a, 16) >= 0  # a short hex string, as stores keep it


def test_a_second_fingerprint_reads_the_cache_and_a_touch_rehashes(tmp_path, cache):
    cache_file, hashed = cache
    root = _model(tmp_path / "m", os.urandom(3 * MIB))
    first = fp.fingerprint(root, ["transformer"])
    assert sorted(hashed) == ["config.json", "diffusion_pytorch_model.safetensors", "model_index.json"]
    assert json.loads(cache_file.read_text())["version"] == 1
    hashed.clear()
    assert fp.fingerprint(root, ["transformer"]) == first and hashed == []
    st = _weights(root).stat()
    os.utime(_weights(root), ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert fp.fingerprint(root, ["transformer"]) == first and hashed == ["diffusion_pytorch_model.safetensors"]


def test_a_replaced_file_with_the_same_size_and_mtime_is_rehashed(tmp_path, cache):
    """A new inode is a new file, even if `cp -p` kept its size and modification time."""
    _, hashed = cache
    root = _model(tmp_path / "m", b"x" * 1000)
    first = fp.fingerprint(root, ["transformer"])
    other = tmp_path / "other"
    other.write_bytes(b"y" * 1000)
    shutil.copystat(_weights(root), other)
    os.replace(other, _weights(root))
    hashed.clear()
    assert fp.fingerprint(root, ["transformer"]) != first and hashed == ["diffusion_pytorch_model.safetensors"]


@pytest.mark.parametrize("damage", ["", "{not json", "[]", '{"version": 1, "files": []}', '{"version": 1, "files": {"/x": "y"}}'])
def test_a_damaged_cache_is_ignored_and_rewritten(tmp_path, cache, damage):
    cache_file, hashed = cache
    root = _model(tmp_path / "m", b"w" * 100)
    first = fp.fingerprint(root, ["transformer"])
    cache_file.write_text(damage)
    hashed.clear()
    assert fp.fingerprint(root, ["transformer"]) == first and len(hashed) == 3
    hashed.clear()
    assert fp.fingerprint(root, ["transformer"]) == first and hashed == []  # rewritten whole


def test_an_unwritable_cache_only_costs_time(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GIGACANVAS_CACHE", str(tmp_path / "file" / "cache"))  # fails for root too
    root = _model(tmp_path / "m", b"w" * 100)
    assert fp.fingerprint(root, ["transformer"]) == fp.fingerprint(root, ["transformer"])


def test_only_what_the_pipeline_loads_counts(tmp_path, cache):
    root = _model(tmp_path / "m", b"w" * 100)
    first = fp.fingerprint(root, ["transformer"])
    (root / "sd3.5_large.safetensors").write_bytes(b"a single-file checkpoint beside the folder")
    (root / "transformer" / ".cache").mkdir()
    (root / "transformer" / ".cache" / "x.metadata").write_text("hf download bookkeeping")
    assert fp.fingerprint(root, ["transformer"]) == first
    (root / "transformer" / "config.json").write_text('{"in_channels": 4}')
    assert fp.fingerprint(root, ["transformer"]) != first


def test_a_single_file_transformer_stands_in_for_the_folder(tmp_path, cache):
    root = _model(tmp_path / "m", b"w" * 100)
    single = tmp_path / "t.safetensors"
    single.write_bytes(b"s" * 100)
    first = fp.fingerprint(root, ["transformer"], single)
    _weights(root).write_bytes(b"changed")  # not loaded when a single file replaces it
    assert fp.fingerprint(root, ["transformer"], single) == first
    single.write_bytes(b"t" * 100)
    assert fp.fingerprint(root, ["transformer"], single) != first


def test_a_big_first_hash_is_announced_once(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setattr(fp, "NOTICE_BYTES", 2 * MIB)
    root = _model(tmp_path / "m", os.urandom(3 * MIB))
    fp.fingerprint(root, ["transformer"])
    assert "gigacanvas: fingerprinting 0.0 GiB of model files (once" in capsys.readouterr().err
    fp.fingerprint(root, ["transformer"])  # cached now: silent
    assert capsys.readouterr().err == ""
