import numpy as np
import pytest

from gigacanvas.errors import UsageError
from gigacanvas.storage import LatentStore


def _make(url):
    store = LatentStore(url)
    store.create({"seed": 1}, "abc", channels=4, height=16, width=24, scale=8)
    return store


@pytest.mark.parametrize("kind", ["path", "file", "memory"])
def test_create_commit_and_read_back(tmp_path, kind):
    url = {"path": str(tmp_path / "s.zarr"), "file": f"file://{tmp_path}/deep/s.zarr", "memory": "memory://gc-test/s.zarr"}[kind]
    store = _make(url)
    noise = np.random.default_rng(0).standard_normal((4, 16, 24)).astype(np.float32)
    store.write_noise(noise)
    latent, step = store.read_latent()
    assert step == 0
    np.testing.assert_array_equal(latent, noise)
    store.commit_latent(noise * 2, 1)
    reopened = LatentStore(url)
    assert reopened.exists()
    latent, step = reopened.read_latent()
    assert step == 1
    np.testing.assert_array_equal(latent, noise * 2)
    np.testing.assert_array_equal(reopened.read_noise(), noise)
    assert reopened.attrs()["spec"] == {"seed": 1} and reopened.attrs()["fingerprint"] == "abc"
    image = np.arange(128 * 192 * 3, dtype=np.uint8).reshape(128, 192, 3)
    reopened.write_image(image)
    np.testing.assert_array_equal(LatentStore(url).read_image(), image)
    assert LatentStore(url).attrs()["decoded"] is True


def test_interrupted_commit_resumes_from_the_whole_latent(tmp_path):
    """A crash after `latent_next` is whole but before `latent` is: the reader takes the next one."""
    store = _make(str(tmp_path / "s.zarr"))
    old = np.zeros((4, 16, 24), np.float32)
    new = np.ones((4, 16, 24), np.float32)
    store.write_noise(old)
    group = store.group
    group["latent_next"][...] = new
    group.attrs["next_step"] = 1
    group["latent"][:, :8] = new[:, :8]  # half-written when the process died
    latent, step = LatentStore(str(tmp_path / "s.zarr")).read_latent()
    assert step == 1
    np.testing.assert_array_equal(latent, new)


def test_crash_before_next_is_recorded_keeps_the_old_step(tmp_path):
    store = _make(str(tmp_path / "s.zarr"))
    old = np.zeros((4, 16, 24), np.float32)
    store.write_noise(old)
    store.group["latent_next"][:, :4] = 5.0  # partial write, next_step never recorded
    latent, step = store.read_latent()
    assert step == 0
    np.testing.assert_array_equal(latent, old)


def test_missing_or_foreign_store_does_not_exist(tmp_path):
    assert not LatentStore(str(tmp_path / "nothing.zarr")).exists()
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    assert not LatentStore(str(tmp_path / "foreign.zarr")).exists()


def test_unknown_protocol_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown protocol 'nope'"):
        LatentStore("nope://bucket/render.zarr")
