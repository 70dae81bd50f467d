import pickle
import time

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.lease import StoreLease
from gigacanvas.storage.store import LAYOUT, plan_bands


def _make(url, **attrs):
    store = LatentStore(url)
    store.create({"seed": 1}, "abc", channels=4, height=16, width=24, scale=8, **attrs)
    return store


@pytest.mark.parametrize("kind", ["path", "file", "memory"])
def test_create_commit_and_read_back(tmp_path, kind):
    url = {"path": str(tmp_path / "s.zarr"), "file": f"file://{tmp_path}/deep/s.zarr", "memory": "memory://gc-test/s.zarr"}[kind]
    store = _make(url, precision="fp32")
    assert store.inspect().kind == "ours-unfinished"  # no commit yet: safe to recreate
    noise = np.random.default_rng(0).standard_normal((4, 16, 24)).astype(np.float32)
    store.write_noise(noise)
    latent, step = store.read_latent()
    assert step == 0
    np.testing.assert_array_equal(latent, noise)
    store.commit_latent(noise * 2, 1)
    store.commit_latent(noise * 3, 2)
    reopened = LatentStore(url)
    assert reopened.exists() and reopened.inspect().kind == "ours"
    latent, step = reopened.read_latent()
    assert step == 2
    np.testing.assert_array_equal(latent, noise * 3)
    np.testing.assert_array_equal(reopened.read_noise(), noise)
    attrs = reopened.attrs()
    assert attrs["spec"] == {"seed": 1} and attrs["fingerprint"] == "abc" and attrs["precision"] == "fp32"
    assert attrs["gigacanvas"] == {"layout": LAYOUT}
    assert not reopened.decoded
    image = np.arange(128 * 192 * 3, dtype=np.uint8).reshape(128, 192, 3)
    reopened.write_image(image)
    np.testing.assert_array_equal(LatentStore(url).read_image(), image)
    assert LatentStore(url).decoded and LatentStore(url).read_latent()[1] == 2


def test_noise_written_chunk_row_by_chunk_row_equals_the_whole(tmp_path):
    """A canvas's noise may be far larger than the driver: the callable form is asked for one chunk
    row's rows at a time from the top, each once, not for a reducer's band (here half the latent),
    and the array ends up as the whole write would leave it."""
    whole = np.random.default_rng(1).standard_normal((4, 512, 8)).astype(np.float32)
    store = LatentStore(str(tmp_path / "s.zarr"))
    store.create({"seed": 1}, "abc", channels=4, height=512, width=8, scale=8, bands=2)
    asked = []

    def rows(y0, y1):
        asked.append((y0, y1))
        return whole[:, y0:y1]

    store.write_noise(rows)
    assert store.bands == ((0, 256), (256, 512))
    assert asked == [(0, 128), (128, 256), (256, 384), (384, 512)]
    np.testing.assert_array_equal(LatentStore(str(tmp_path / "s.zarr")).read_noise(), whole)
    assert LatentStore(str(tmp_path / "s.zarr")).read_latent()[1] == 0


def test_create_never_replaces_an_existing_group(tmp_path):
    url = str(tmp_path / "s.zarr")
    _make(url).write_noise(np.zeros((4, 16, 24), np.float32))
    with pytest.raises(UsageError, match="cannot be created"):
        _make(url)
    assert LatentStore(url).read_latent()[1] == 0


def test_inspect_classifies_without_writing(tmp_path):
    assert LatentStore(str(tmp_path / "nothing.zarr")).inspect().kind == "new"
    (tmp_path / "empty").mkdir()
    assert LatentStore(str(tmp_path / "empty")).inspect().kind == "empty"
    (tmp_path / "f.txt").write_text("x")
    assert LatentStore(str(tmp_path / "f.txt")).inspect().kind == "file"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "a.txt").write_text("x")
    state = LatentStore(str(tmp_path / "user")).inspect()
    assert state.kind == "foreign" and state.others == ("a.txt",)
    foreign = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    foreign.create_array("data", shape=(2,), dtype="int8")
    assert LatentStore(str(tmp_path / "foreign.zarr")).inspect().kind == "foreign"
    ours = _make(str(tmp_path / "ours.zarr"))
    ours.write_noise(np.zeros((4, 16, 24), np.float32))
    (tmp_path / "ours.zarr" / "notes.txt").write_text("mine")
    assert LatentStore(str(tmp_path / "ours.zarr")).inspect().kind == "foreign"  # someone added a file
    newer = _make(str(tmp_path / "newer.zarr"))
    newer.set_attrs(gigacanvas={"layout": LAYOUT + 1})
    assert LatentStore(str(tmp_path / "newer.zarr")).inspect().kind == "newer"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for name in ("nothing.zarr", "empty", "f.txt", "user", "foreign.zarr", "ours.zarr", "newer.zarr"):
        LatentStore(str(tmp_path / name)).inspect()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_layout_1_store_is_recognised_as_an_older_gigacanvas_store(tmp_path):
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    for name in ("noise", "latent", "latent_next"):
        group.create_array(name, shape=(4, 8, 8), dtype="float32")
    group.attrs.update({"spec": {"seed": 1}, "fingerprint": "x", "completed_step": 3, "next_step": 3, "decoded": False})
    store = LatentStore(str(tmp_path / "old.zarr"))
    state = store.inspect()
    assert state.kind == "old" and not store.exists()
    store.clear(state)
    assert list((tmp_path / "old.zarr").iterdir()) == []


def test_clear_deletes_only_a_gigacanvas_store(tmp_path):
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "a.txt").write_text("x")
    store = LatentStore(str(tmp_path / "user"))
    with pytest.raises(UsageError, match="only a gigacanvas store; refusing to delete anything"):
        store.clear(store.inspect())
    assert (tmp_path / "user" / "a.txt").read_text() == "x"


def test_unknown_protocol_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown protocol 'nope'"):
        LatentStore("nope://bucket/render.zarr")


def test_a_relative_path_is_the_same_store_from_any_working_folder(tmp_path, monkeypatch):
    """Reducers open the store by its URL in processes whose working folder is the cluster's."""
    monkeypatch.chdir(tmp_path)
    store = LatentStore("rel.zarr")
    assert store.url == str(tmp_path / "rel.zarr")
    store.create({"seed": 1}, "f", channels=4, height=8, width=8, scale=8)
    store.write_noise(np.ones((4, 8, 8), np.float32))
    monkeypatch.chdir(tmp_path.parent)
    assert LatentStore(store.url).read_latent()[1] == 0
    assert LatentStore("memory://x/y.zarr").url == "memory://x/y.zarr"


def test_bands_are_read_at_their_minimum_committed_step(tmp_path):
    url = str(tmp_path / "s.zarr")
    store = LatentStore(url)
    store.create({"seed": 1}, "abc", channels=2, height=40, width=16, scale=8, bands=3)
    assert store.bands == ((0, 16), (16, 32), (32, 40))
    noise = np.random.default_rng(0).standard_normal((2, 40, 16)).astype(np.float32)
    store.write_noise(noise)
    store.commit_latent(noise + 1, 1)
    assert store.commit_band(1, (noise + 2)[:, 16:32], 2)  # band 1 ran ahead, then a crash
    again = LatentStore(url)
    assert again.committed_step() == 1
    latent, step = again.read_latent()
    assert step == 1
    np.testing.assert_array_equal(latent, noise + 1)
    rows, step = again.read_rows(10, 20)
    assert step == 1
    np.testing.assert_array_equal(rows, (noise + 1)[:, 10:20])
    assert not again.commit_band(1, (noise + 9)[:, 16:32], 2)  # a band that has the step keeps it
    again.commit_latent(noise + 2, 2)
    np.testing.assert_array_equal(LatentStore(url).read_latent()[0], noise + 2)
    with pytest.raises(RenderError, match="cannot commit step 4"):
        again.commit_band(0, noise[:, :16], 4)


@pytest.mark.parametrize(("height", "count", "expected"), [
    (1024, 8, (128, 8)), (1024, 3, (128, 3)), (40, 2, (24, 2)), (40, 3, (16, 3)), (300, 1, (128, 1)), (8, 4, (8, 1)),
])
def test_plan_bands_cover_the_rows_on_chunk_edges(height, count, expected):
    chunk_rows, bands = plan_bands(height, count)
    assert (chunk_rows, len(bands)) == expected
    assert bands[0][0] == 0 and bands[-1][1] == height
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    assert all(y0 % chunk_rows == 0 and y1 > y0 for y0, y1 in bands)


def test_a_layout_2_store_is_older_and_only_replaced(tmp_path):
    store = _make(str(tmp_path / "two.zarr"))
    store.set_attrs(gigacanvas={"layout": 2}, commit={"step": 0, "slot": "noise", "decoded": False})
    state = LatentStore(str(tmp_path / "two.zarr")).inspect()
    assert state.kind == "old" and state.layout == 2
    LatentStore(str(tmp_path / "two.zarr")).clear(state)
    assert list((tmp_path / "two.zarr").iterdir()) == []


# -- a reducer's store follows the driver's lease ----------------------------------------------


def _driver_and_reducer(tmp_path):
    """A driver holding the lease on a 2-band store at step 0, and a reducer's store following it."""
    url = str(tmp_path / "s.zarr")
    driver = _make(url, bands=2)
    driver.lease = StoreLease(driver.location, timeout_s=30)
    driver.lease.acquire()
    noise = np.random.default_rng(0).standard_normal((4, 16, 24)).astype(np.float32)
    driver.write_noise(noise)
    ticket = pickle.loads(pickle.dumps(driver.lease.ticket()))  # as it reaches a Ray actor
    return driver, LatentStore(url, ticket=ticket), noise


def test_a_reducer_following_the_lease_stops_once_another_render_took_the_store(tmp_path):
    driver, reducer, noise = _driver_and_reducer(tmp_path)
    try:
        assert reducer.commit_band(0, noise[:, :8] + 1, 1)
        time.sleep(0.1)  # the driver stalls: to a render with a 0.05 s timeout its heartbeat is stale
        taker = StoreLease(driver.location, timeout_s=0.05)
        taker.acquire()
        before = reducer.band_record(1)
        with pytest.raises(RenderError, match=r"was taken over by another render .*; this reducer stops without writing$"):
            reducer.commit_band(1, noise[:, 8:] + 1, 1)
        assert reducer.band_record(1) == before
        np.testing.assert_array_equal(LatentStore(reducer.url).read_latent()[0], noise)
        np.testing.assert_array_equal(zarr.open_group(reducer.url, mode="r")["latent_a"][:, 8:], 0)  # no rows written either
        taker.release()
    finally:
        driver.lease.release()


def test_a_reducer_following_the_lease_stops_once_the_render_released_it(tmp_path):
    driver, reducer, noise = _driver_and_reducer(tmp_path)
    driver.lease.release()
    with pytest.raises(RenderError, match=r"was released by its render .*; this reducer stops without writing$"):
        reducer.commit_band(0, noise[:, :8] + 1, 1)
    before = reducer.band_record(0)
    assert (before["step"], before["slot"], before["prev"]) == (0, "noise", None)
    again = StoreLease(driver.location)  # the next render gets lease number 1 again: the token tells them apart
    again.acquire()
    try:
        assert again.number == reducer.ticket.number
        with pytest.raises(RenderError, match="was taken over by another render"):
            reducer.commit_band(0, noise[:, :8] + 1, 1)
        assert reducer.band_record(0)["step"] == 0
    finally:
        again.release()


# -- crash safety: every write of every step may be the last one a process makes -----------------

STEPS = 4
# 3 bands of 3 chunks each, so a crash can leave a band half written: 3 chunk columns of 128 and
# chunk rows of 8 (the fewest plan_bands gives); a taller latent adds bytes, not writes.
SHAPE = (4, 24, 300)
BANDS = 3


def _advance(latent: np.ndarray, step: int) -> np.ndarray:
    """A stand-in for one denoising step whose result depends on the whole input."""
    return (latent * np.float32(0.9) + np.float32(step + 1) + latent.mean(dtype=np.float32)).astype(np.float32)


class Crash(Exception):
    pass


def _run_until(url: str, monkeypatch, crash_at: int | None, order_seed: int = 0, threads: bool = False) -> None:
    """One 'process': create or resume, then step to the end; dies at its `crash_at`-th write.

    Each step commits the bands in a seeded order (or all at once from threads, as reducers do);
    from the crash on, every write fails, as in a process that is gone.
    """
    from zarr.storage import FsspecStore, LocalStore

    from gigacanvas.storage.location import Location

    writes = {"n": 0}
    real_set, real_fsspec_set, real_put = LocalStore.set, FsspecStore.set, Location.put

    def count(key):
        writes["n"] += 1
        if crash_at is not None and writes["n"] >= crash_at:
            raise Crash(f"killed at write {crash_at} ({key})")

    async def counting_set(self, key, value):
        count(key)
        return await real_set(self, key, value)

    async def counting_fsspec_set(self, key, value, byte_range=None):  # object storage (tests/storage/test_s3.py)
        count(key)
        return await real_fsspec_set(self, key, value, byte_range)

    def counting_put(self, name, data):
        count(name)
        return real_put(self, name, data)

    monkeypatch.setattr(LocalStore, "set", counting_set)
    monkeypatch.setattr(FsspecStore, "set", counting_fsspec_set)
    monkeypatch.setattr(Location, "put", counting_put)
    rng = np.random.default_rng(order_seed)
    try:
        store = LatentStore(url)
        kind = store.inspect().kind
        if kind != "ours":
            if kind == "ours-unfinished":
                store.clear(store.inspect())
            store = _make_big(url)
            store.write_noise(np.random.default_rng(7).standard_normal(SHAPE).astype(np.float32))
        latent, done = store.read_latent()
        for step in range(done, STEPS):
            latent = _advance(latent, step)
            jobs = [(b, latent[:, y0:y1], step + 1) for b, (y0, y1) in enumerate(store.bands)]
            if threads:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(len(jobs)) as pool:
                    for future in [pool.submit(store.commit_band, *job) for job in jobs]:
                        future.result()
            else:
                for i in rng.permutation(len(jobs)):
                    store.commit_band(*jobs[i])
    finally:
        _settle_zarr()
        monkeypatch.setattr(LocalStore, "set", real_set)
        monkeypatch.setattr(FsspecStore, "set", real_fsspec_set)
        monkeypatch.setattr(Location, "put", real_put)


def _settle_zarr() -> None:
    """Wait for the writes zarr started beside the one that crashed.

    The crash here is an exception, not a killed process: zarr runs a node's metadata write and its
    parents' `set_if_not_exists` side by side, and the parents' (not counted here) can land after
    the exception, even after the next 'process' cleared the store, leaving a foreign empty group
    where it creates ours (ContainsGroupError, seen once in CI). A killed process's in-flight writes
    land before it dies or never; letting them land first is the former.
    """
    import asyncio

    from zarr.core.sync import _get_loop

    async def drain():
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others)

    asyncio.run_coroutine_threadsafe(drain(), _get_loop()).result(timeout=60)


def _make_big(url):
    store = LatentStore(url)
    store.create({"seed": 7}, "abc", channels=SHAPE[0], height=SHAPE[1], width=SHAPE[2], scale=1, bands=BANDS)
    return store


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("clean") / "s.zarr")
    with pytest.MonkeyPatch.context() as mp:
        _run_until(url, mp, None)
    store = LatentStore(url)
    assert len(store.bands) == BANDS
    return store.read_latent()[0]


def _survives(tmp_path, monkeypatch, crashes, expected, seed=0, threads=False, url=None) -> None:
    url = url or str(tmp_path / "s.zarr")
    for i, crash_at in enumerate(crashes):
        try:
            _run_until(url, monkeypatch, crash_at, seed + i, threads)
        except Exception as exc:  # noqa: BLE001 - the crash, possibly wrapped as a store error
            assert "killed at write" in str(exc)
    _run_until(url, monkeypatch, None, seed)
    latent, step = LatentStore(url).read_latent()
    assert step == STEPS
    np.testing.assert_array_equal(latent, expected)


def test_a_crash_at_any_single_write_resumes_to_the_same_latent(tmp_path_factory, monkeypatch, expected):
    for crash_at in range(1, 75):
        _survives(tmp_path_factory.mktemp("one"), monkeypatch, [crash_at], expected, seed=crash_at)


def test_a_crash_while_bands_commit_concurrently_resumes_to_the_same_latent(tmp_path_factory, monkeypatch, expected):
    for crash_at in range(20, 75, 3):
        _survives(tmp_path_factory.mktemp("threads"), monkeypatch, [crash_at], expected, threads=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crashes=st.lists(st.integers(1, 66), min_size=2, max_size=4), seed=st.integers(0, 2**16))
def test_repeated_crashes_at_any_writes_resume_to_the_same_latent(tmp_path_factory, monkeypatch, expected, crashes, seed):
    """The double crash that broke layout 1: mid-copy at one step, mid-write at the next; bands in any order."""
    _survives(tmp_path_factory.mktemp("many"), monkeypatch, crashes, expected, seed)


# -- transient errors: object stores throttle and drop connections --------------------------------


def _flaky(monkeypatch, every: int, fail_from: int | None = None) -> dict:
    """Every `every`-th chunk write or record put fails once with a throttling OSError, as S3's
    SlowDown does; from write `fail_from` on, every write fails (an outage)."""
    from zarr.storage import LocalStore

    from gigacanvas.storage import store as store_module
    from gigacanvas.storage.location import Location

    monkeypatch.setattr(store_module, "STORE_RETRY_S", 0.001)
    calls = {"n": 0, "failed": 0}
    real_set, real_put = LocalStore.set, Location.put

    def maybe_fail(key):
        if key.endswith("zarr.json"):
            return  # the group's and arrays' metadata, written once by create (a failure there: rerun)
        calls["n"] += 1
        if (fail_from is not None and calls["n"] >= fail_from) or calls["n"] % every == 0:
            calls["failed"] += 1
            raise OSError(f"SlowDown: please reduce your request rate ({key})")

    async def flaky_set(self, key, value):
        maybe_fail(key)
        return await real_set(self, key, value)

    def flaky_put(self, name, data):
        maybe_fail(name)
        return real_put(self, name, data)

    monkeypatch.setattr(LocalStore, "set", flaky_set)
    monkeypatch.setattr(Location, "put", flaky_put)
    return calls


def test_throttled_writes_are_retried_and_the_latent_is_the_same(tmp_path, monkeypatch, expected):
    url = str(tmp_path / "s.zarr")
    # A retry repeats the whole write (up to 9 chunks here), so one in 10 fails each write once at most.
    calls = _flaky(monkeypatch, every=10)
    _run_until(url, monkeypatch, None)
    assert calls["failed"] >= 5  # writes failed (throttled), and were retried
    latent, step = LatentStore(url).read_latent()
    assert step == STEPS
    np.testing.assert_array_equal(latent, expected)


def test_a_write_that_keeps_failing_stops_with_one_line_and_the_store_resumes(tmp_path, monkeypatch, expected):
    url = str(tmp_path / "s.zarr")
    with monkeypatch.context() as mp:
        _flaky(mp, every=10**9, fail_from=40)
        with pytest.raises(RenderError, match=r"^store .*: (writing|recording) band \d+ failed 5 times \(OSError: SlowDown.*\); the store keeps its last committed step$"):
            _run_until(url, mp, None)
    assert 0 < LatentStore(url).committed_step() < STEPS
    _run_until(url, monkeypatch, None)
    np.testing.assert_array_equal(LatentStore(url).read_latent()[0], expected)


@pytest.mark.parametrize("kind", ["path", "memory"])
def test_a_refinement_store_starts_at_its_start_step(tmp_path, kind):
    """A refinement's store: `noise` holds its first latent, at `start` (layout 5), and every read,
    commit and resume counts from there; a layout-4 store (no start_step) starts at 0."""
    url = {"path": str(tmp_path / "r.zarr"), "memory": "memory://gc-test/r.zarr"}[kind]
    store = _make(url, start=3, bands=2)
    first = np.random.default_rng(1).standard_normal((4, 16, 24)).astype(np.float32)
    store.write_noise(first)
    again = LatentStore(url)
    assert again.inspect().kind == "ours" and again.start_step == 3
    latent, step = again.read_latent()
    assert step == 3 and again.committed_step() == 3
    np.testing.assert_array_equal(latent, first)
    with pytest.raises(RenderError, match="cannot commit step 5"):
        again.commit_latent(first, 5)
    again.commit_band(0, first[:, :8] * 2, 4)  # one band ahead: reads stay at 3, from its prev
    np.testing.assert_array_equal(LatentStore(url).read_latent()[0], first)
    LatentStore(url).commit_band(1, first[:, 8:] * 2, 4)
    latent, step = LatentStore(url).read_latent()
    assert step == 4
    np.testing.assert_array_equal(latent, first * 2)
    old = _make(str(tmp_path / "old.zarr"))
    old.group.attrs.pop("start_step")
    assert LatentStore(old.url).start_step == 0


def test_stages_are_stores_of_ours_kept_by_clear_and_anything_else_there_is_foreign(tmp_path):
    url = str(tmp_path / "s.zarr")
    final = _make(url, start=1)
    stage = final.stage("0-256x128-abc")
    stage.create({"seed": 1}, "abc", channels=4, height=16, width=32, scale=8)
    stage.write_noise(np.zeros((4, 16, 32), np.float32))
    assert LatentStore(url).inspect().kind == "ours-unfinished"
    final.write_noise(np.ones((4, 16, 24), np.float32))
    assert LatentStore(url).inspect().kind == "ours"
    assert LatentStore(url).stage_names() == ["0-256x128-abc"]
    LatentStore(url).clear(LatentStore(url).inspect())  # another render's --overwrite: the stages stay
    assert LatentStore(url).inspect().kind == "empty"
    assert LatentStore(url).stage("0-256x128-abc").inspect().kind == "ours"
    (tmp_path / "s.zarr" / "stages" / "notes.txt").write_text("mine")
    state = LatentStore(url).inspect()
    assert state.kind == "foreign" and state.others == ("stages/notes.txt",)
