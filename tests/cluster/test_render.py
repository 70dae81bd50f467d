"""Renders on the shared local Ray cluster with the tiny model: the properties users rely on."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.errors import RenderError
from gigacanvas.storage import LatentStore
from tests.helpers import MULTI_TILE, fail_after_step


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


class _InProcess:
    """A plain `Worker` behind the `.decode.remote(...)` call that `decode_latent` makes of an actor."""

    def __init__(self, worker):
        import ray

        self.decode = SimpleNamespace(remote=lambda latents: ray.put(worker.decode(latents)))


def test_one_tile_render_matches_the_diffusers_pipeline(tiny_model, ray_cluster, tmp_path):
    import torch
    from diffusers import StableDiffusion3Pipeline

    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster.decode import decode_latent
    from gigacanvas.cluster.dispatch import WorkerPool
    from gigacanvas.tiling import initial_noise

    args = dict(prompt="a lighthouse", negative_prompt="fog", width=256, height=192, steps=3, guidance=4.5, seed=11)
    # memory://: the band reducer runs in this process (no reducer actor to start); the numbers
    # compared here do not depend on where the latent is kept
    result = render(
        RenderSpec(
            model=tiny_model, tile_size=256, vae_tile_size=0, actors=1, precision="fp32",
            store="memory://gc-render/diffusers.zarr", out=str(tmp_path / "r.png"), **args
        ),
        progress=False,
    )
    assert result.tiles_per_step == 1
    latent, step = LatentStore(result.store).read_latent()
    assert step == 3

    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_model)
    pipe.set_progress_bar_config(disable=True)
    call = dict(
        prompt=args["prompt"],
        negative_prompt=args["negative_prompt"],
        width=args["width"],
        height=args["height"],
        num_inference_steps=args["steps"],
        guidance_scale=args["guidance"],
        latents=torch.from_numpy(initial_noise(11, 16, 24, 32))[None],
    )
    ref_latent = pipe(**call, output_type="latent").images[0].numpy()
    ref_image = pipe(**call, output_type="np").images[0]

    # the render's decode path on a plain Worker in this process (no actor to start and load)
    worker = Worker(open_model(tiny_model))
    worker.load("fp32")
    pixels = decode_latent(WorkerPool([_InProcess(worker)]), latent, 8, 0)
    ours = np.clip(pixels / 2 + 0.5, 0, 1).transpose(1, 2, 0)
    latent_diff = np.abs(latent - ref_latent).max()
    image_diff = np.abs(ours - ref_image).max()
    print(f"max abs difference vs diffusers: latent {latent_diff:.2e}, float image {image_diff:.2e}")
    assert latent_diff < 1e-4
    assert image_diff < 1e-4
    # and the PNG is that image, quantised as diffusers quantises
    assert np.abs(_pixels(result.out).astype(int) - (ref_image * 255).round().astype(int)).max() <= 1


@pytest.fixture
def one_band_per_actor(monkeypatch):
    from gigacanvas.cluster import steploop

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)  # a small canvas gets several reducers too


def _same_as_one_actor(again, actors: int, one_actor_render) -> None:
    result, one = one_actor_render
    assert again.actors == actors and len(LatentStore(again.store).bands) == actors
    np.testing.assert_array_equal(_pixels(again.out), one)
    np.testing.assert_array_equal(LatentStore(again.store).read_latent()[0], LatentStore(result.store).read_latent()[0])


def test_interrupted_render_resumes_to_the_same_pixels(one_actor_render, tiny_model, tmp_path, monkeypatch, one_band_per_actor):
    """Two actors, each band its own reducer, stopped after step 1 and resumed: one actor's pixels and
    latent (conftest's render; three actors: test_multinode.py, on three nodes)."""
    spec = RenderSpec(model=tiny_model, actors=2, out=str(tmp_path / "r.png"), **MULTI_TILE)
    fail_after_step(monkeypatch, 1, "simulated node loss")
    with pytest.raises(RenderError, match="simulated"):
        render(spec, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "r.png").exists()
    assert LatentStore(spec.store_url).read_latent()[1] == 1

    notes = []
    result = render(spec, progress=False, notify=notes.append)
    assert any("resuming" in n and "at step 1 of 2" in n for n in notes)
    assert result.steps_run == 1
    _same_as_one_actor(result, 2, one_actor_render)  # the store keeps the two bands it was made with


def test_tiles_smaller_than_native_and_memory_store(tiny_model, ray_cluster, tmp_path):
    out = tmp_path / "m.png"
    spec = RenderSpec(
        prompt="x", width=384, height=128, steps=1, model=tiny_model, tile_size=128, tile_overlap=32,
        store="memory://gigacanvas-test/m.zarr", out=str(out), actors=1,
    )
    result = render(spec, progress=False)
    assert result.tiles_per_step == 4
    assert _pixels(out).shape == (128, 384, 3)
    assert LatentStore(spec.store_url).read_latent()[1] == 1


def _seam_ratio(pixels: np.ndarray, axis: int) -> float:
    """How much the picture jumps across its joined edge against the median jump between two
    neighbouring interior columns (axis 1) or rows (axis 0): about 1 where the edges join."""
    p = pixels.astype(float)
    jumps = np.abs(np.diff(p, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
    edge = np.abs(np.take(p, 0, axis=axis) - np.take(p, -1, axis=axis)).mean()
    return float(edge / np.median(jumps))


def test_a_wrapped_render_joins_its_edges_and_is_identical_for_one_and_two_actors(tiny_model, ray_cluster, tmp_path, one_band_per_actor):
    """wrap xy on 512 x 256 with 256 px tiles: three tiles around the width, one around the height
    (rolled every step), decode tiles whose halos cross the edges; the bits do not see the actors."""
    spec = {**MULTI_TILE, "height": 256, "wrap": "xy"}
    one = render(RenderSpec(model=tiny_model, actors=1, out=str(tmp_path / "1.png"), **spec), progress=False)
    two = render(RenderSpec(model=tiny_model, actors=2, out=str(tmp_path / "2.png"), **spec), progress=False)
    assert len(LatentStore(two.store).bands) == 2
    np.testing.assert_array_equal(_pixels(two.out), _pixels(one.out))
    np.testing.assert_array_equal(LatentStore(two.store).read_latent()[0], LatentStore(one.store).read_latent()[0])
    # The joined edges jump no more than neighbouring columns inside (0.94 measured). A plain
    # render is no contrast with these random weights: its zero-padded edges come out alike
    # (0.56); tests/cluster/test_reducer.py and tests/actors/test_vaedecode.py pin the torus down.
    wrapped = _pixels(one.out)
    assert max(_seam_ratio(wrapped, 0), _seam_ratio(wrapped, 1)) < 1.5
