"""A node's copy of the planned model (actors/nodemodel.py), without Ray: the worker's `prepare`
runs here as it runs in an actor, with "this machine" for the node and a cache of its own."""

import shutil
from pathlib import Path

import pytest

from gigacanvas.actors.loading import open_model
from gigacanvas.actors.nodemodel import BUILTIN, localize
from gigacanvas.actors.worker import Worker
from gigacanvas.errors import UsageError
from tests.helpers import s3_bucket


@pytest.fixture(autouse=True)
def outside_ray(monkeypatch):
    """These workers run in this process: 'this machine', even where an earlier test joined Ray."""
    monkeypatch.setattr("gigacanvas.actors.worker._node", lambda: "this machine")


@pytest.fixture(scope="module")
def bucket(tiny_model):
    """The tiny model as a folder on a loopback S3 server, and its transformer as one file."""
    with s3_bucket("gigacanvas-nodemodel") as url:
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.put(tiny_model, f"{url}/tiny-sd3", recursive=True)
        yield url


@pytest.fixture
def node_cache(tmp_path, monkeypatch):
    """Another node's (empty) model cache."""
    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(tmp_path / "node-cache"))
    return tmp_path / "node-cache"


@pytest.fixture
def model_copy(tiny_model, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model, copy)
    return copy


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_url_model_is_the_folder_models_bytes_and_each_node_fetches_its_own_copy(bucket, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(tmp_path / "driver-cache"))
    info = open_model(f"{bucket}/tiny-sd3")
    assert info.fingerprint == open_model(tiny_model).fingerprint  # the same bytes, wherever they came from
    (field, url, key), = info.sources
    assert (field, url) == ("path", f"{bucket}/tiny-sd3") and info.path == str(tmp_path / "driver-cache" / key)

    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(tmp_path / "node-cache"))
    worker = Worker(info)
    worker.prepare()
    assert worker.info.path == str(tmp_path / "node-cache" / key) and worker.info.fingerprint == info.fingerprint


def test_a_single_file_url_with_a_url_base_model(bucket, tiny_model, tmp_path, node_cache):
    import s3fs

    transformer = next((Path(tiny_model) / "transformer").glob("*.safetensors"))
    s3fs.S3FileSystem().put_file(str(transformer), f"{bucket}/files/t.safetensors")
    info = open_model(f"{bucket}/files/t.safetensors", f"{bucket}/tiny-sd3")
    assert [s[0] for s in info.sources] == ["transformer_file", "path"]
    here = localize(info)
    assert here.transformer_file.endswith("t.safetensors") and here.fingerprint == info.fingerprint
    with pytest.raises(UsageError, match="is neither a diffusers folder nor a .safetensors or .gguf file"):
        open_model(f"{bucket}/tiny-sd3/model_index.json")
    with pytest.raises(UsageError, match="files holds no files gigacanvas reads"):
        open_model(f"{bucket}/files")  # only a root-level file: not a model folder
    s3fs.S3FileSystem().pipe_file(f"{bucket}/no-index/vae/config.json", b"{}")
    with pytest.raises(UsageError, match="no-index has no model_index.json; it is not a diffusers pipeline folder"):
        open_model(f"{bucket}/no-index")


def test_a_node_copy_with_other_bytes_is_refused(model_copy):
    info = open_model(str(model_copy))
    weights = next((model_copy / "vae").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the same path, other weights: another model on this node
    weights.write_bytes(bytes(data))
    with pytest.raises(UsageError) as exc:
        Worker(info).prepare()
    assert "is not the model the render was planned with" in _one_line(exc)
    assert f"planned {info.fingerprint}" in str(exc.value) and "on this machine" in str(exc.value)


def test_a_damaged_cached_copy_and_a_url_changed_since_planning_are_refused(bucket, tmp_path, node_cache, monkeypatch):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.copy(f"{bucket}/tiny-sd3", f"{bucket}/changing", recursive=True)
    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(tmp_path / "driver-cache"))
    info = open_model(f"{bucket}/changing")
    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(node_cache))
    here = localize(info)
    weights = next(Path(here.path).glob("vae/*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UsageError) as exc:
        localize(info)
    assert "remove the cached copy" in _one_line(exc) and here.path in str(exc.value)

    shutil.rmtree(node_cache)
    fs.pipe_file(f"{bucket}/changing/scheduler/scheduler_config.json", fs.cat_file(f"{bucket}/changing/scheduler/scheduler_config.json") + b" ")
    with pytest.raises(UsageError) as exc:
        localize(info)
    assert "changed since the render was planned" in _one_line(exc) and str(exc.value).startswith("on this machine: ")


def test_a_node_without_credentials_says_so(bucket, tmp_path, node_cache, monkeypatch):
    import s3fs

    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(tmp_path / "driver-cache"))
    info = open_model(f"{bucket}/tiny-sd3")
    monkeypatch.setenv("GIGACANVAS_MODEL_CACHE", str(node_cache))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):  # nor ~/.aws, nor the metadata service
        monkeypatch.setenv(name, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(UsageError) as exc:
            localize(info)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert _one_line(exc) == (
        f"on this machine: model {bucket}/tiny-sd3 cannot be listed (NoCredentialsError: Unable to locate credentials); "
        "every machine of the render needs its own credentials that may read it"
    )


def test_a_folder_this_node_lacks_is_refused_with_what_to_do(model_copy):
    info = open_model(str(model_copy))
    model_copy.rename(model_copy.with_name("elsewhere"))
    with pytest.raises(UsageError) as exc:
        Worker(info).prepare()
    assert _one_line(exc) == (
        f"model {info.path} is not readable on this machine; put it on every node at the same path, "
        "or pass an s3:// (or other fsspec) URL"
    )


def test_the_built_in_model_is_built_on_each_node():
    info = open_model(None)
    assert info.sources == (("path", BUILTIN, ""),)
    assert localize(info).path == info.path  # this node's own build (here, the same cache)
