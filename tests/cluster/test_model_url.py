"""Models the nodes share no disk for: `--model s3://...` on a loopback S3 server (moto), and a
folder that only the driver has, on the shared local Ray cluster."""

import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gigacanvas.storage import fetch as fetch_module
from tests.helpers import S3_ENV, run_cli, s3_bucket

FLAGS = ["--prompt", "a kite", "--width", "256", "--height", "192", "--steps", "1", "--actors", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model_url(tiny_model):
    """The tiny model under a prefix of its own (the cache key includes the URL: no other test's copy)."""
    with s3_bucket("gigacanvas-models") as bucket:
        import s3fs

        url = f"{bucket}/tiny-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem().put(tiny_model, url, recursive=True)
        yield url


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_a_model_from_s3_renders_the_folders_pixels_fetched_once_per_node(model_url, tiny_model, ray_cluster, tmp_path, capsys, monkeypatch):
    from gigacanvas.actors.nodemodel import model_cache_dir

    downloads = []
    real = fetch_module._download
    monkeypatch.setattr(fetch_module, "_download", lambda fs, pairs: (downloads.append(len(pairs)), real(fs, pairs)))
    store = f"memory://gc-model-url/{uuid.uuid4().hex[:8]}.zarr"  # its band reducer in this process: no actor to start
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", model_url, "--out", str(tmp_path / "s3.png"), "--store", store)
    assert code == 0, err
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", tiny_model, "--out", str(tmp_path / "folder.png"),
                           "--store", f"{store}-folder")
    assert code == 0, err
    np.testing.assert_array_equal(_pixels(tmp_path / "s3.png"), _pixels(tmp_path / "folder.png"))
    # One download on this node: the driver's. The actor found that copy by the planned key (it has
    # no credentials: it would have failed to fetch).
    entries = [p for p in model_cache_dir().iterdir() if p.name.startswith(model_url.rsplit("/", 1)[-1])]
    (entry,) = [p for p in entries if p.is_dir()]
    assert len(downloads) == 1 and not [p for p in entries if ".partial-" in p.name]
    stamp = {p: p.stat().st_mtime_ns for p in entry.rglob("*")}

    # A second render with the model (here: the finished store's picture written again) lists the
    # prefix and downloads nothing.
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", model_url, "--out", str(tmp_path / "again.png"), "--store", store)
    assert code == 0 and "holds the finished picture" in err, err
    assert len(downloads) == 1 and {p: p.stat().st_mtime_ns for p in entry.rglob("*")} == stamp
    np.testing.assert_array_equal(_pixels(tmp_path / "again.png"), _pixels(tmp_path / "folder.png"))


def test_a_node_with_an_empty_cache_fetches_with_its_own_credentials(model_url, ray_cluster, tmp_path):
    """An actor as on another node: its own (empty) cache, its own credentials in its environment."""
    import ray

    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import worker_actor_class

    info = open_model(model_url)
    node_env = {**S3_ENV, "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "GIGACANVAS_MODEL_CACHE": str(tmp_path / "node")}
    actor = worker_actor_class().options(num_cpus=0.5, runtime_env={"env_vars": node_env}).remote(info, 1)
    try:
        ray.get(actor.prepare.remote(), timeout=120)
        path = ray.get(actor.__ray_call__.remote(lambda self: self.info.path), timeout=30)
    finally:
        ray.kill(actor)
    assert Path(path).parent == tmp_path / "node" and (Path(path) / "model_index.json").is_file()


def test_a_folder_only_the_driver_has_fails_before_any_work_naming_the_node(tiny_model, ray_cluster, tmp_path, capsys, monkeypatch):
    from gigacanvas.cluster import placement

    model = tmp_path / "only-here"
    shutil.copytree(tiny_model, model)
    plan_shape = placement.plan_shape

    def planned_then_gone(*args, **kwargs):  # the driver has planned with it; the nodes do not have it
        model.rename(tmp_path / "elsewhere")
        return plan_shape(*args, **kwargs)

    monkeypatch.setattr(placement, "plan_shape", planned_then_gone)
    out, store = tmp_path / "p.png", tmp_path / "p.zarr"
    code, _, err = run_cli(capsys, "render", *FLAGS, "--model", str(model), "--out", str(out), "--store", str(store))
    lines = err.strip().splitlines()
    assert code == 2 and [line for line in lines if "error" in line] == lines[-1:], err
    assert re.fullmatch(
        rf"gigacanvas: error: model {re.escape(str(model))} is not readable on node [0-9.]+ \(node id [0-9a-f]{{12}}\.\.\.\); "
        r"put it on every node at the same path, or pass an s3:// \(or other fsspec\) URL",
        lines[-1],
    ), err
    assert not out.exists() and not store.exists()  # nothing written: refused before any work
