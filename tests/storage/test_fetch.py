"""Remote files into the local cache (storage/fetch.py), against a loopback S3 server (moto)."""

import threading
import time

import pytest

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage import fetch as fetch_module
from gigacanvas.storage.fetch import fetch, list_remote, remote_protocol
from tests.helpers import s3_bucket

PATTERNS = ("index.json", "*/*.bin")
FILES = {"index.json": b"{}", "a/w.bin": b"x" * 3000, "b/w.bin": b"y" * 5000, "a/skip.txt": b"not matched",
         ".hidden/w.bin": b"hidden"}


@pytest.fixture(scope="module")
def bucket():
    with s3_bucket("gigacanvas-fetch") as url:
        import s3fs

        fs = s3fs.S3FileSystem()
        for name, data in FILES.items():
            fs.pipe_file(f"{url}/m/{name}", data)
        fs.pipe_file(f"{url}/one.safetensors", b"z" * 100)
        yield url


@pytest.fixture
def downloads(monkeypatch):
    """Every download's remote paths, in order; downloads still happen."""
    calls: list[list[str]] = []
    real = fetch_module._download

    def counting(fs, pairs):
        calls.append([r for r, _ in pairs])
        real(fs, pairs)

    monkeypatch.setattr(fetch_module, "_download", counting)
    return calls


def _fetch(url, root, **kw):
    return fetch(url, root, PATTERNS, notify=lambda line: None, **kw)


def test_a_folder_is_fetched_once_whole_and_then_found_by_its_key(bucket, tmp_path, downloads, monkeypatch):
    path, key = _fetch(f"{bucket}/m", tmp_path)
    assert path == tmp_path / key and key.startswith("m-")
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == [
        ".gigacanvas-fetch.json", "a/w.bin", "b/w.bin", "index.json"]  # patterns only, hidden skipped
    assert (path / "b" / "w.bin").read_bytes() == FILES["b/w.bin"]
    assert len(downloads) == 1
    stamp = (path / "a" / "w.bin").stat().st_mtime_ns
    assert _fetch(f"{bucket}/m", tmp_path) == (path, key)  # one LIST, no download
    # With the key the planner took, no network at all.
    monkeypatch.setattr(fetch_module, "list_remote", lambda *a, **k: pytest.fail("listed with a cached key"))
    assert _fetch(f"{bucket}/m", tmp_path, key=key) == (path, key)
    assert len(downloads) == 1 and (path / "a" / "w.bin").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [key, f"{key}.lock"]


def test_a_single_file_url_is_the_one_file_in_its_entry(bucket, tmp_path):
    path, key = _fetch(f"{bucket}/one.safetensors", tmp_path)
    assert path == tmp_path / key / "one.safetensors" and path.read_bytes() == b"z" * 100
    assert _fetch(f"{bucket}/one.safetensors", tmp_path, key=key)[0] == path


def test_a_rewritten_object_is_a_new_key_and_a_planned_key_that_changed_is_refused(bucket, tmp_path):
    import s3fs

    url = f"{bucket}/changing"
    fs = s3fs.S3FileSystem()
    fs.pipe_file(f"{url}/index.json", b"{}")
    fs.pipe_file(f"{url}/a/w.bin", b"old")
    planned = list_remote(url, PATTERNS).key
    fs.pipe_file(f"{url}/a/w.bin", b"new")  # same size, new ETag
    assert list_remote(url, PATTERNS).key != planned
    with pytest.raises(UsageError, match=f"{url} changed since the render was planned"):
        _fetch(url, tmp_path, key=planned)
    assert not list(tmp_path.iterdir())  # nothing downloaded


def test_a_crash_mid_download_leaves_no_entry_and_a_dead_partial_is_never_used(bucket, tmp_path, monkeypatch):
    key = list_remote(f"{bucket}/m", PATTERNS).key
    real = fetch_module._download

    def half_then_crash(fs, pairs):
        real(fs, pairs[:1])
        raise ConnectionResetError("connection lost")

    monkeypatch.setattr(fetch_module, "_download", half_then_crash)
    with pytest.raises(RenderError, match="could not be downloaded .*connection lost"):
        _fetch(f"{bucket}/m", tmp_path)
    assert not (tmp_path / key).exists() and not list(tmp_path.glob("*.partial-*"))

    # A process killed mid-download leaves its partial folder behind: never read, removed by the next fetch.
    dead = tmp_path / f"{key}.partial-0123456789ab"
    (dead / "a").mkdir(parents=True)
    (dead / "a" / "w.bin").write_bytes(b"x" * 10)
    monkeypatch.setattr(fetch_module, "_download", real)
    path, _ = _fetch(f"{bucket}/m", tmp_path, key=key)
    assert (path / "a" / "w.bin").read_bytes() == FILES["a/w.bin"] and not dead.exists()


def test_a_short_file_is_refused(bucket, tmp_path, monkeypatch):
    real = fetch_module._download

    def truncating(fs, pairs):
        real(fs, pairs)
        with open(pairs[-1][1], "r+b") as fh:
            fh.truncate(1)

    monkeypatch.setattr(fetch_module, "_download", truncating)
    with pytest.raises(RenderError, match="came down with 1 of"):
        _fetch(f"{bucket}/m", tmp_path)
    key = list_remote(f"{bucket}/m", PATTERNS).key
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.lock"]  # no entry, no partial


def test_processes_fetching_at_once_share_one_download(bucket, tmp_path, monkeypatch):
    calls, notes = [], []
    real = fetch_module._download

    def slow(fs, pairs):
        calls.append(1)
        time.sleep(0.5)  # the other fetch arrives meanwhile and waits on the lock
        real(fs, pairs)

    monkeypatch.setattr(fetch_module, "_download", slow)
    results = []

    def one():
        results.append(fetch(f"{bucket}/m", tmp_path, PATTERNS, notify=notes.append))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and results[0] == results[1] and len(calls) == 1
    assert any("waiting for another process fetching" in n for n in notes), notes


@pytest.mark.parametrize(
    ("url", "message"),
    [("s3://gigacanvas-fetch/nothing-here", "does not exist"),
     ("s3://gigacanvas-fetch/m/a/skip.txt", None),  # one file: any name (the caller checks the kind)
     ("s3://gigacanvas-fetch/m/a", "holds no files gigacanvas reads")],
)
def test_urls_with_nothing_to_fetch_are_one_line(bucket, tmp_path, url, message):
    if message is None:
        assert _fetch(url, tmp_path)[0].name == "skip.txt"
        return
    with pytest.raises(UsageError, match=message):
        _fetch(url, tmp_path)


def test_only_remote_urls_are_fetched():
    assert remote_protocol("/models/sd35") is None and remote_protocol("file:///models/sd35") is None
    assert remote_protocol("s3://b/sd35") == "s3"
    with pytest.raises(UsageError, match="actors cannot read memory://"):
        remote_protocol("memory://sd35")
    with pytest.raises(UsageError, match="unknown protocol 'nosuch'"):
        remote_protocol("nosuch://b/sd35")
