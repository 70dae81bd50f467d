"""The store and its lease on object storage: a loopback S3 server (moto), started by the test.

The same promises as on a disk: commits are all or nothing at every write, so any crash resumes
to the same latent; of racing renders exactly one takes the lease (a conditional put, not a
hard link); a reducer following a lease that was taken over writes nothing.
"""

import time

import numpy as np
import pytest

from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.lease import StoreLease
from gigacanvas.storage.location import Location
from tests.helpers import s3_bucket
from tests.storage.test_lease import race_for
from tests.storage.test_store import STEPS, _run_until, _survives

@pytest.fixture(scope="module")
def bucket():
    """s3://gigacanvas-test on a moto server at 127.0.0.1, for this module; the env points s3fs there."""
    with s3_bucket("gigacanvas-test") as url:
        yield url


def test_a_store_on_s3_commits_resumes_and_is_classified_like_a_folder(bucket):
    url = f"{bucket}/round.zarr"
    store = LatentStore(url)
    assert store.inspect().kind == "new"
    store.create({"seed": 1}, "fp", channels=4, height=16, width=32, scale=8, bands=2)
    noise = np.random.default_rng(0).standard_normal((4, 16, 32)).astype(np.float32)
    store.write_noise(noise)
    store.commit_latent(noise + 1, 1)
    again = LatentStore(url)
    assert again.inspect().kind == "ours"
    latent, step = again.read_latent()
    assert step == 1
    np.testing.assert_array_equal(latent, noise + 1)


def test_of_racing_renders_exactly_one_takes_an_s3_store(bucket):
    location = Location(f"{bucket}/race.zarr")
    winners = [r for r in race_for(location, 6) if r is not None]
    assert len(winners) == 1
    with pytest.raises(UsageError, match="is in use by another render"):
        StoreLease(location).acquire()
    winners[0].release()
    assert location.names("lease-") == []


def test_a_reducer_on_s3_stops_once_its_render_lost_the_lease(bucket):
    url = f"{bucket}/takeover.zarr"
    driver = LatentStore(url)
    driver.create({"seed": 1}, "fp", channels=4, height=16, width=32, scale=8, bands=2)
    noise = np.zeros((4, 16, 32), np.float32)
    driver.write_noise(noise)
    lease = StoreLease(driver.location, timeout_s=30)
    lease.acquire()
    reducer = LatentStore(url, ticket=lease.ticket())
    assert reducer.commit_band(0, noise[:, :8] + 1, 1)
    time.sleep(0.2)
    taker = StoreLease(driver.location, timeout_s=0.1)  # sees the first holder's heartbeat as stale
    taker.acquire()
    try:
        with pytest.raises(RenderError, match="was taken over by another render"):
            reducer.commit_band(1, noise[:, 8:] + 1, 1)
        assert LatentStore(url).band_record(1)["step"] == 0
    finally:
        taker.release()
        lease.release()


@pytest.fixture(scope="module")
def expected_on_disk(tmp_path_factory):
    url = str(tmp_path_factory.mktemp("clean-s3") / "s.zarr")
    with pytest.MonkeyPatch.context() as mp:
        _run_until(url, mp, None)
    return LatentStore(url).read_latent()[0]


@pytest.mark.parametrize("crashes", [[5], [23], [41, 12], [60, 33, 7]])
def test_crashes_at_s3_writes_resume_to_the_latent_of_a_disk_store(bucket, monkeypatch, expected_on_disk, crashes, tmp_path):
    url = f"{bucket}/crash-{'-'.join(map(str, crashes))}.zarr"
    _survives(tmp_path, monkeypatch, crashes, expected_on_disk, seed=sum(crashes), url=url)
    assert LatentStore(url).read_latent()[1] == STEPS


def test_outputs_on_s3_are_whole_or_absent_and_read_back_equal(bucket, tmp_path):
    """A TIFF goes up as one upload of a finished temp file; an OME-Zarr export's metadata is its
    last key, and an old export of ours is invalidated before its keys go."""
    import s3fs
    import tifffile
    import zarr

    from gigacanvas.storage.multiscale import export_state, read_zarr_spec
    from gigacanvas.storage.outputs import existing_output_spec, write_output
    from tests.helpers import finished_store

    store, image = finished_store(str(tmp_path / "s.zarr"), 1104, 256)
    fs = s3fs.S3FileSystem()
    tif, export = f"{bucket}/out/p.tif", f"{bucket}/out/p.ome.zarr"
    write_output(tif, store, {"prompt": "a"}, "")
    np.testing.assert_array_equal(tifffile.imread(fs.open(tif, "rb")), image)
    assert existing_output_spec(tif) == {"prompt": "a"}
    write_output(export, store, {"prompt": "a"}, "")
    assert export_state(export) == "ours" and read_zarr_spec(export) == {"prompt": "a"}
    write_output(export, store, {"prompt": "b"}, "")
    group = zarr.open_group(export, mode="r", storage_options={"anon": False})
    np.testing.assert_array_equal(group["0"][...].transpose(1, 2, 0), image)
    assert read_zarr_spec(export) == {"prompt": "b"}
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket}/out", detail=False)) == ["p.ome.zarr", "p.tif"]
