"""The store's OME-Zarr levels and the exported OME-Zarr folder (multiscale.py)."""

import json

import numpy as np
import pytest
import zarr

from gigacanvas.storage import LatentStore
from gigacanvas.storage.multiscale import (
    build_levels,
    export_levels,
    export_state,
    halve,
    has_levels,
    level_shapes,
    read_zarr_spec,
)
from gigacanvas.storage.store import LAYOUT
from tests.helpers import finished_store

PICTURE = {"prompt": "a kite", "seed": 3}


def _reference(image):
    """Every level, computed whole the slow way: the 2 x 2 mean, odd edges repeated."""
    levels, level = [], image.transpose(2, 0, 1).astype(np.float64)
    for h, w in level_shapes(*image.shape[:2]):
        assert level.shape[1:] == (h, w)
        levels.append(level.astype(np.uint8))
        padded = np.pad(level, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
        level = np.floor((padded[:, 0::2, 0::2] + padded[:, 1::2, 0::2] + padded[:, 0::2, 1::2] + padded[:, 1::2, 1::2] + 2) / 4)
    return levels


def test_level_shapes_halve_down_to_512():
    assert level_shapes(512, 300) == [(512, 300)]
    assert level_shapes(2400, 1360) == [(2400, 1360), (1200, 680), (600, 340), (300, 170)]
    assert level_shapes(1025, 16) == [(1025, 16), (513, 8), (257, 4)]


def test_halve_is_the_rounded_block_mean_with_odd_edges_repeated():
    rows = np.array([[[0, 255, 10], [1, 2, 11], [7, 7, 7]]], np.uint8)  # (1, 3, 3)
    np.testing.assert_array_equal(halve(rows), [[[(0 + 255 + 1 + 2 + 2) // 4, (10 * 2 + 11 * 2 + 2) // 4], [7, 7]]])


def test_the_store_holds_its_levels_and_opens_as_ome_zarr(tmp_path):
    url = str(tmp_path / "s.zarr")
    store, image = finished_store(url, 2400, 1360)  # odd-sized levels, bands of 1024 rows and a rest
    assert not has_levels(store)
    build_levels(store, PICTURE)
    group = zarr.open_group(url, mode="r")
    for k, expected in enumerate(_reference(image)):
        np.testing.assert_array_equal(group[str(k)][...], expected)
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (multiscale,) = ome["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["c", "y", "x"]
    assert [a["type"] for a in multiscale["axes"]] == ["channel", "space", "space"]
    assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2", "3"]
    assert multiscale["datasets"][2]["coordinateTransformations"] == [{"type": "scale", "scale": [1.0, 4.0, 4.0]}]
    assert [c["color"] for c in ome["omero"]["channels"]] == ["FF0000", "00FF00", "0000FF"]
    assert group.attrs["picture"] == PICTURE and read_zarr_spec(url) == PICTURE
    again = LatentStore(url)
    assert has_levels(again) and again.inspect().kind == "ours" and again.attrs()["gigacanvas"] == {"layout": LAYOUT}
    assert again.read_latent()[1] == 2  # the render itself is untouched


def test_levels_are_built_in_chunk_aligned_squares_whatever_the_width(tmp_path, monkeypatch):
    """With 32 px chunks, a 200 x 328 picture is many squares across and down, odd at its edges:
    the levels still equal the whole computation, every read of the picture is at most a square of
    2 x 2 chunks, and every write is chunk-aligned and at most a square (nothing a band wide)."""
    from gigacanvas.storage import multiscale

    monkeypatch.setattr(multiscale, "LEVEL_CHUNK", 32)
    monkeypatch.setattr(multiscale, "SMALLEST", 16)
    reads, writes = [], []
    real_read, real_write = LatentStore.image_block, LatentStore.write_level_block

    def read(self, y0, x0, side):
        out = real_read(self, y0, x0, side)
        reads.append(out.shape[:2])
        return out

    def write(self, level, y0, x0, block):
        writes.append((level, y0, x0, *block.shape[1:]))
        real_write(self, level, y0, x0, block)

    monkeypatch.setattr(LatentStore, "image_block", read)
    monkeypatch.setattr(LatentStore, "write_level_block", write)
    url = str(tmp_path / "s.zarr")
    store, image = finished_store(url, 200, 328)
    build_levels(store, PICTURE)
    group = zarr.open_group(url, mode="r")
    expected = _reference(image)
    assert len(expected) == 6
    for k, level in enumerate(expected):
        np.testing.assert_array_equal(group[str(k)][...], level)
    assert len(reads) == 4 * 6 and max(max(r) for r in reads) == 64
    assert all(y0 % 32 == 0 and x0 % 32 == 0 and h <= 64 and w <= 64 for _, y0, x0, h, w in writes)
    assert {level for level, *_ in writes} == set(range(6))


def test_a_layout_3_store_resumes_and_is_marked_4_before_its_levels(tmp_path):
    url = str(tmp_path / "s.zarr")
    store, _ = finished_store(url, 256, 256)
    store.set_attrs(gigacanvas={"layout": 3})
    assert LatentStore(url).inspect().kind == "ours"  # still resumable
    build_levels(store, PICTURE)
    assert LatentStore(url).attrs()["gigacanvas"] == {"layout": 4}
    # a layout-3 store with level arrays is not one this gigacanvas wrote
    LatentStore(url).set_attrs(gigacanvas={"layout": 3})
    assert LatentStore(url).inspect().kind == "foreign"


def test_clear_deletes_the_levels_too(tmp_path):
    url = str(tmp_path / "s.zarr")
    store, _ = finished_store(url, 1536, 256)
    build_levels(store, PICTURE)
    fresh = LatentStore(url)
    fresh.clear(fresh.inspect())
    assert sorted(p.name for p in (tmp_path / "s.zarr").iterdir()) == []


def test_an_export_holds_the_levels_alone_and_replaces_only_an_export(tmp_path):
    store, image = finished_store(str(tmp_path / "s.zarr"), 1104, 696)
    build_levels(store, PICTURE)
    out = str(tmp_path / "e.ome.zarr")
    assert export_state(out) == "new"
    export_levels(out, store, PICTURE)
    group = zarr.open_group(out, mode="r")
    assert sorted(group.array_keys()) == ["0", "1", "2"]
    np.testing.assert_array_equal(group["0"][...], image.transpose(2, 0, 1))
    assert group.attrs["ome"]["multiscales"][0]["name"] == "e.ome.zarr" and read_zarr_spec(out) == PICTURE
    assert export_state(out) == "ours"
    export_levels(out, store, {"prompt": "again"})
    assert read_zarr_spec(out) == {"prompt": "again"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ome.zarr", "s.zarr"]  # no temp folder left
    (tmp_path / "e.ome.zarr" / "notes.txt").write_text("mine")
    assert export_state(out) == "foreign"  # a file of someone's inside: no longer only ours
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    assert export_state(str(tmp_path / "user")) == "foreign"


def test_a_failed_export_leaves_the_old_one(tmp_path, monkeypatch):
    from gigacanvas.storage import multiscale

    store, _ = finished_store(str(tmp_path / "s.zarr"), 256, 256)
    build_levels(store, PICTURE)
    out = str(tmp_path / "e.ome.zarr")
    export_levels(out, store, PICTURE)

    def broken(array):
        yield 0, 0, array[:, :10, :10]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(multiscale, "level_squares", broken)
    with pytest.raises(OSError):
        export_levels(out, store, {"prompt": "new"})
    assert read_zarr_spec(out) == PICTURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.ome.zarr", "s.zarr"]


def test_the_store_and_an_export_are_valid_ngff_0_5_images(tmp_path):
    """Checked by ome-zarr-models, the NGFF spec's pydantic models (axes, datasets, dimension names)."""
    from ome_zarr_models.v05.image import Image

    store, _ = finished_store(str(tmp_path / "s.zarr"), 1104, 696)
    build_levels(store, PICTURE)
    export_levels(str(tmp_path / "e.ome.zarr"), store, PICTURE)
    for name in ("s.zarr", "e.ome.zarr"):
        image = Image.from_zarr(zarr.open_group(str(tmp_path / name), mode="r"))
        assert [d.path for d in image.attributes.ome.multiscales[0].datasets] == ["0", "1", "2"]
