"""What `--store` and `--overwrite` may touch: only new paths, empty folders and gigacanvas stores."""

import os

import numpy as np
import pytest
import zarr

from gigacanvas.cluster.claim import claim_store
from gigacanvas.errors import UsageError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.store import LAYOUT
from tests.helpers import snapshot

CONTENT = {"prompt": "x", "seed": 1}


def _ours(url, content=CONTENT, fingerprint="fp"):
    store = LatentStore(url)
    store.create(content, fingerprint, channels=4, height=8, width=8, scale=8)
    store.write_noise(np.ones((4, 8, 8), np.float32))
    store.commit_latent(np.full((4, 8, 8), 2, np.float32), 1)
    return store


def _user_folder(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("precious")
    (folder / "sub" / "b.txt").write_text("also precious")
    return folder


def _foreign_zarr(tmp_path):
    group = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w")
    group.create_array("science", shape=(3,), dtype="int8")[...] = [1, 2, 3]
    return tmp_path / "theirs.zarr"


def _newer(tmp_path):
    store = _ours(str(tmp_path / "newer.zarr"))
    store.set_attrs(gigacanvas={"layout": LAYOUT + 1})
    return tmp_path / "newer.zarr"


def _model_like(tmp_path):
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "transformer" / "w.safetensors").write_bytes(b"\0" * 64)
    return folder


def _source_tree(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "main.py").write_text("print('hi')\n")
    return folder


def _plain_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    return path


REFUSED = {
    "a folder of the user's files": (_user_folder, "holds files that are not a gigacanvas store (a.txt, sub)"),
    "someone else's zarr group": (_foreign_zarr, "holds files that are not a gigacanvas store"),
    "a model folder": (_model_like, "not a gigacanvas store (model_index.json, transformer)"),
    "a source folder": (_source_tree, "not a gigacanvas store (main.py)"),
    "a file": (_plain_file, "is a file"),
    "a store of a newer gigacanvas": (_newer, f"newer gigacanvas (store layout {LAYOUT + 1}"),
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_is_not_a_gigacanvas_store_is_refused_and_left_untouched(case, overwrite, tmp_path):
    make, message = REFUSED[case]
    target = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        claim_store(str(target), CONTENT, "fp", overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_the_current_folder_is_refused(tmp_path, monkeypatch):
    (tmp_path / "work.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="not a gigacanvas store"):
        claim_store(".", CONTENT, "fp", overwrite=True)
    assert (tmp_path / "work.txt").read_text() == "x"


def test_new_path_and_empty_folder_are_used(tmp_path):
    claim = claim_store(str(tmp_path / "new.zarr"), CONTENT, "fp", overwrite=False)
    assert not claim.resumable and claim.replace is None and claim.made_root
    claim.release()
    assert not (tmp_path / "new.zarr").exists()  # nothing was written: the folder goes again
    (tmp_path / "empty").mkdir()
    claim = claim_store(str(tmp_path / "empty"), CONTENT, "fp", overwrite=False)
    assert not claim.resumable and not claim.made_root
    claim.release()
    assert (tmp_path / "empty").is_dir() and list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_store_of_this_render_is_resumed_even_with_overwrite(tmp_path, overwrite):
    url = str(tmp_path / "s.zarr")
    _ours(url)
    claim = claim_store(url, CONTENT, "fp", overwrite=overwrite)
    try:
        assert claim.resumable and claim.replace is None
        assert claim.store.read_latent()[1] == 1
    finally:
        claim.release()
    assert LatentStore(url).read_latent()[1] == 1


def test_a_store_of_another_render_needs_overwrite_and_then_only_our_keys_go(tmp_path):
    url = str(tmp_path / "s.zarr")
    _ours(url, content={"prompt": "y", "seed": 1})
    with pytest.raises(UsageError, match="holds a render of another spec \\(differs in prompt\\)"):
        claim_store(url, CONTENT, "fp", overwrite=False)
    with pytest.raises(UsageError, match="differs in model"):
        claim_store(url, {"prompt": "y", "seed": 1}, "other-model", overwrite=False)
    claim = claim_store(url, CONTENT, "fp", overwrite=True)
    try:
        assert not claim.resumable and claim.replace.kind == "ours"
        claim.store.clear(claim.replace)
        assert sorted(os.listdir(url)) == [n for n in sorted(os.listdir(url)) if n.startswith("lease-")]
    finally:
        claim.release()


def test_an_older_layout_is_replaced_only_with_overwrite(tmp_path):
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    group.create_array("latent", shape=(4, 8, 8), dtype="float32")
    group.attrs.update({"spec": CONTENT, "fingerprint": "fp", "completed_step": 3, "next_step": 3})
    with pytest.raises(UsageError, match="older gigacanvas \\(store layout 1\\) and cannot be resumed; pass --overwrite"):
        claim_store(str(tmp_path / "old.zarr"), CONTENT, "fp", overwrite=False)
    claim = claim_store(str(tmp_path / "old.zarr"), CONTENT, "fp", overwrite=True)
    assert claim.replace.kind == "old"
    claim.release()


def test_a_store_that_cannot_be_created_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot be"):
        claim_store(str(tmp_path / "file" / "x.zarr"), CONTENT, "fp", overwrite=False)
    assert (tmp_path / "file").read_text() == "x"


def test_a_second_render_on_a_held_store_is_refused(tmp_path):
    url = str(tmp_path / "s.zarr")
    first = claim_store(url, CONTENT, "fp", overwrite=False)
    try:
        with pytest.raises(UsageError, match="in use by another render"):
            claim_store(url, CONTENT, "fp", overwrite=True)
    finally:
        first.release()


def _unfinished_with_user_files(tmp_path):
    store = LatentStore(str(tmp_path / "s.zarr"))
    store.create(CONTENT, "fp", channels=4, height=8, width=8, scale=8)  # killed before its first commit
    (tmp_path / "s.zarr" / "image" / "photos").mkdir(parents=True)
    (tmp_path / "s.zarr" / "image" / "photos" / "precious.txt").write_text("precious")
    return tmp_path / "s.zarr"


def _finished_with_a_user_file_named_like_an_array(tmp_path):
    url = str(tmp_path / "s.zarr")
    _ours(url, content={"prompt": "other"})
    import shutil

    shutil.rmtree(tmp_path / "s.zarr" / "latent_b")
    (tmp_path / "s.zarr" / "latent_b").write_text("keep")  # a file where an array folder would be
    return tmp_path / "s.zarr"


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("make", [_unfinished_with_user_files, _finished_with_a_user_file_named_like_an_array])
def test_files_inside_a_stores_own_folders_make_it_not_ours(make, overwrite, tmp_path):
    target = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="holds files that are not a gigacanvas store"):
        claim_store(str(target), CONTENT, "fp", overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_clear_refuses_a_store_that_gained_a_file_since_it_was_inspected(tmp_path):
    url = str(tmp_path / "s.zarr")
    store = _ours(url)
    state = store.inspect()
    (tmp_path / "s.zarr" / "noise" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="no longer"):
        store.clear(state)
    assert (tmp_path / "s.zarr" / "noise" / "notes.txt").exists()


def test_local_urls_are_local_and_chained_urls_are_refused(tmp_path):
    claim = claim_store(f"local://{tmp_path}/deep/s.zarr", CONTENT, "fp", overwrite=False)
    claim.store.create(CONTENT, "fp", channels=4, height=8, width=8, scale=8)
    claim.store.write_noise(np.zeros((4, 8, 8), np.float32))
    claim.release()
    assert LatentStore(f"local://{tmp_path}/deep/s.zarr").exists()
    with pytest.raises(UsageError, match="chains filesystems"):
        claim_store(f"simplecache::{tmp_path}/c.zarr", CONTENT, "fp", overwrite=False)
    assert not (tmp_path / "c.zarr").exists()
