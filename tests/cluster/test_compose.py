"""Composed renders (cluster/compose.py) on the shared Ray cluster with the tiny model.

CANVAS is 512 x 256 px, twice the tiny model's native 256 px side: its composition is 368 x 176
px (about 256^2 px, the canvas's 2:1), and at strength 0.6 of 3 steps the refinement starts at
step 1 (diffusers' t_start = int(3 - 1.8)) and runs two. It wraps around along x (a panorama
strip, spec version 5): every stage, the upscale and the encode wrap, which these tests hold to
the same promises as a plain composition's (a plain one: test_render_sdxl.py; the plain encode
across actor counts: test_upscale.py), without a second pair of renders in CI.
"""

import numpy as np
import pytest
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.errors import RenderError
from gigacanvas.storage import LatentStore
from gigacanvas.storage.outputs import read_output_spec
from tests.helpers import run_cli

CANVAS = dict(
    prompt="a lighthouse on a cliff, poster", negative_prompt="blurry", width=512, height=256, steps=3, guidance=4.5,
    seed=7, tile_size=256, tile_batch=2, vae_tile_size=256, strength=0.6, wrap="x",
)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def composed(tiny_model, ray_cluster, tmp_path_factory):
    """CANVAS composed on one actor, its stores in this process (memory://): (result, its pixels)."""
    out = tmp_path_factory.mktemp("composed") / "one.png"
    spec = RenderSpec(model=tiny_model, actors=1, store="memory://gc-compose/one.zarr", out=str(out), **CANVAS)
    result = render(spec, progress=False)
    return result, _pixels(out)


def test_the_composition_is_rendered_at_the_native_area_and_the_refinement_starts_where_strength_says(composed, tiny_model):
    from gigacanvas.actors.loading import open_model
    from gigacanvas.cluster.plan import make_scheduler
    from gigacanvas.tiling import initial_noise

    result, pixels = composed
    assert pixels.shape == (256, 512, 3) and result.start_step == 1 and result.steps_run == 2
    (stage_url,) = result.stages
    stage = LatentStore(stage_url)
    assert stage.image_shape == (176, 368) and stage.decoded and stage.read_latent()[1] == 3
    assert abs(368 * 176 / 256**2 - 1) < 0.02  # about the native pixel count, the canvas's aspect
    assert stage.attrs()["spec"]["width"] == 368 and "compose" not in stage.attrs()["spec"]  # a plain render
    final = LatentStore(result.store)
    assert final.start_step == 1 and final.attrs()["stages"] == [stage_url.rsplit("/", 1)[1]]
    assert final.attrs()["spec"]["compose"] == "1" and final.attrs()["spec"]["strength"] == 0.6
    assert stage.attrs()["spec"]["wrap"] == "x"  # the composition is a torus too
    spec = read_output_spec(result.out)  # the picture records the mode and the version
    assert (spec["compose"], spec["strength"], spec["spec_version"], spec["wrap"]) == ("1", 0.6, 5, "x")
    # the stage's store records no out: a resume of it must never write over the final picture
    assert stage.attrs()["local"]["out"] is None and final.attrs()["local"]["out"] == result.out
    from gigacanvas.cluster.resume import resume_spec
    from gigacanvas.errors import UsageError

    with pytest.raises(UsageError, match="is an earlier stage of a composed render and records no picture of its own"):
        resume_spec(stage_url)

    # the start latent is the composition's encode noised with the render's own noise to step 1's sigma
    scheduler = make_scheduler(open_model(tiny_model), 3, 32, 64)
    sigma = float(scheduler.sigmas[1])
    noise = initial_noise(7, 16, 32, 64)
    start = final.read_noise()
    encoded = (start - sigma * noise) / (1 - sigma)
    from gigacanvas.actors.worker import Worker
    from gigacanvas.tiling.grid import Window

    worker = Worker(open_model(tiny_model))
    worker.load("fp32")
    whole = worker.encode_tile(stage.read_image(), (256, 512), Window(0, 0, 32, 64), 0, (False, True))  # one piece
    error = np.abs(encoded - whole).mean() / np.abs(whole).mean()
    print(f"tiled encode against the whole encode: mean abs error {error:.4f} of the mean abs latent")
    assert error < 0.1


def test_a_composed_render_is_the_same_on_two_actors_with_its_stages_in_their_stores(composed, tiny_model, tmp_path, monkeypatch):
    """Two actors, two bands (reducer actors, a path store): the same composition and picture."""
    from gigacanvas.cluster import steploop

    monkeypatch.setattr(steploop, "BAND_BYTES", 1)
    result, one = composed
    two = render(RenderSpec(model=tiny_model, actors=2, out=str(tmp_path / "two.png"), **CANVAS), progress=False)
    assert two.actors == 2 and len(LatentStore(two.store).bands) == 2
    np.testing.assert_array_equal(_pixels(two.out), one)
    np.testing.assert_array_equal(LatentStore(two.stages[0]).read_image(), LatentStore(result.stages[0]).read_image())
    np.testing.assert_array_equal(LatentStore(two.store).read_noise(), LatentStore(result.store).read_noise())


def test_a_refinement_stopped_midway_resumes_to_the_same_pixels_and_another_strength_reuses_the_composition(
    composed, tiny_model, tmp_path, monkeypatch, capsys
):
    from gigacanvas.cluster import render as render_module

    denoise = render_module.denoise
    final_url = str(tmp_path / "r.zarr")

    def stop_the_refinement(store, *args, on_step, **kwargs):
        def on_step_then_fail(done):
            on_step(done)
            if store.url == final_url and done == 2:  # the refinement's first step, not the composition's
                raise RenderError("simulated node loss")

        return denoise(store, *args, on_step=on_step_then_fail, **kwargs)

    monkeypatch.setattr(render_module, "denoise", stop_the_refinement)
    spec = RenderSpec(model=tiny_model, actors=1, store=final_url, out=str(tmp_path / "r.png"), **CANVAS)
    with pytest.raises(RenderError, match="simulated"):
        render(spec, progress=False)
    monkeypatch.undo()
    assert LatentStore(final_url).read_latent()[1] == 2 and not (tmp_path / "r.png").exists()
    capsys.readouterr()  # the stopped render's lines

    code, stdout, err = run_cli(capsys, "resume", "--store", final_url, "--no-progress")
    assert code == 0, err
    assert "resuming" in err and "at step 2 of 3" in err and "composition" not in err
    np.testing.assert_array_equal(_pixels(tmp_path / "r.png"), composed[1])

    # another strength: a new render of the same store (--overwrite) that reuses the composition
    code, stdout, err = run_cli(
        capsys, "render", "--spec", str(tmp_path / "r.png"), "--model", tiny_model, "--strength", "1",
        "--store", final_url, "--out", str(tmp_path / "r9.png"), "--overwrite", "--no-progress",
    )
    assert code == 0, err
    assert "found finished" in err and "reusing it" in err and "from step 0 of 3" in err
    assert LatentStore(final_url).start_step == 0 and len(LatentStore(final_url).stage_names()) == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--strength", "0"], "strength 0.0 must be a number above 0 and at most 1"),
        # 3 steps at 0.8 start at step 0: the composition would not count
        (["--compose", "1", "--strength", "0.8", "--steps", "3"], "strength 0.8 of 3 steps starts the refinement at "
         "step 0, from pure noise: the composition would not count; pass --steps 5 or more, or --strength 0.666 or less"),
        (["--strength", "1.01"], "strength 1.01 must be a number above 0 and at most 1"),
        (["--strength", "nan"], "strength nan must be a number above 0 and at most 1"),
        (["--compose", "many"], "compose 'many' is not auto, none or a number of stages from 1 to 8"),
        (["--compose", "0"], "compose '0' is not auto, none or a number of stages from 1 to 8"),
        (["--compose", "2"], "compose 2: stage 1 would be 736x352 px, not smaller than the canvas 512x256 px; at most 1 stage(s) fit"),
        (["--compose", "1", "--width", "256"], "compose 1: the canvas 256x256 px is no larger than the model's native area"),
        (["--compose", "none", "--strength", "0.5"], "strength 0.5 has no effect with compose none"),
        (["--compose", "1", "--height", "512", "--wrap", "x", "--shift-windows", "off"], "compose 1 with wrap x needs "
         "shifted windows: its 256x256 px stage fits one 256 px tile, which a fixed grid never moves across the join"),
    ],
)
def test_bad_compose_input_is_one_line_and_exit_2(flags, message, tiny_model, tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "render", "--prompt", "x", "--width", "512", "--height", "256", "--model", tiny_model,
        "--out", str(tmp_path / "x.png"), "--dry-run", *flags,
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.zarr").exists()


def test_the_tiled_encode_of_a_torus_has_no_edge_and_commutes_with_rolls(tiny_model):
    """A torus has no edge: the wrapped encode of a picture rolled by the encode tiles' spacing is
    the roll of its encode (the tiles, their halos across the join, the circular padding along the
    axis a tile spans whole, all move with the picture), to float rounding. The plain encode's
    edge tiles clamp at the borders: the same roll gives another latent (about 80 % of the
    latent's mean magnitude apart, measured once; not run here, to keep CI short).

    64 x 96 px from a 16 x 24 px picture (4x): latent 8 x 12 in tiles of 8 (64 px) a quarter
    overlapping, around the columns 2 tiles 6 apart, down the rows 1 tile spanning them."""
    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster.compose import encode_canvas, encode_grid

    info = open_model(tiny_model)
    worker = Worker(info)
    worker.load("fp32")

    class Plain:
        """WorkerPool's `map` with one plain worker, in this process (no Ray)."""

        class encode_tile:
            remote = staticmethod(worker.encode_tile)

        def map(self, jobs, call, done):
            for job in jobs:
                done(job, call(self, job))

    grid, halo = encode_grid(8, 12, 8, (True, True))
    assert grid.xs == (0, 6) and grid.ys == (0,) and halo == 1
    picture = np.random.default_rng(5).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    rolled = np.roll(picture, (2, 12), (0, 1))  # (8, 48) px on the canvas: (1, 6) latent

    def encode(image, wrap):
        return encode_canvas(Plain(), image, 96, 64, info, 64, wrap=wrap, put=lambda array: array)

    torus = encode(picture, (True, True))
    np.testing.assert_allclose(encode(rolled, (True, True)), np.roll(torus, (1, 6), (1, 2)), atol=1e-4)


@pytest.mark.parametrize("wrap", [(False, False), (True, False)])
def test_the_encode_asked_range_by_range_is_the_whole_encode_and_encodes_each_tile_once(tiny_model, wrap):
    """The refinement's first latent is written a chunk row at a time (store.write_noise), so the
    driver never holds the canvas's latent: asked for 3 row ranges from the top, the encode gives
    the whole encode's bits (each pixel folds the same tiles in the same order), and each tile is
    encoded once although the tiles overlap the ranges (and, on a torus, the last one the first
    range too). 96 x 64 px: latent 12 x 8 in tiles of 4 (32 px) a quarter overlapping."""
    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster.compose import encode_canvas, encoded_rows, encode_grid

    info = open_model(tiny_model)
    worker = Worker(info)
    worker.load("fp32")
    calls: list = []

    class Plain:
        class encode_tile:
            @staticmethod
            def remote(image, size, window, halo, **kwargs):
                calls.append(window)
                return worker.encode_tile(image, size, window, halo, **kwargs)

        def map(self, jobs, call, done):
            for job in jobs:
                done(job, call(self, job))

    picture = np.random.default_rng(6).integers(0, 256, (24, 16, 3), dtype=np.uint8)
    whole = encode_canvas(Plain(), picture, 64, 96, info, 32, wrap=wrap, put=lambda array: array)
    tiles = len(encode_grid(12, 8, 4, wrap)[0])
    assert len(calls) == tiles
    calls.clear()
    rows = encoded_rows(Plain(), picture, 64, 96, info, 32, wrap=wrap, put=lambda array: array)
    parts = [rows(0, 5), rows(5, 8), rows(8, 12)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    assert len(calls) == tiles and len(set(calls)) == tiles


def test_an_upscaled_encode_is_the_same_on_one_and_two_workers(tiny_model, tmp_path):
    """With `--upscaler`, each encode tile runs the model on its own crop (fixed by the plan's
    windows): the blended latent is the same bits whichever worker made which tile, and another
    than LANCZOS's alone. 64 x 96 px from a 16 x 24 px picture, tiles of 32 px (3 x 5 of them)."""
    from types import SimpleNamespace

    from gigacanvas.actors.loading import open_model
    from gigacanvas.actors.upscaler import check_upscaler
    from gigacanvas.actors.worker import Worker
    from gigacanvas.cluster.compose import encode_canvas
    from tests.actors.upscalerfiles import compact

    info = open_model(tiny_model)
    workers = [Worker(info), Worker(info)]
    for worker in workers:
        worker.load("fp32")

    class Pool:
        """WorkerPool's `map` over plain workers in this process, tile i on worker i mod n."""

        def __init__(self, n):
            self.n = n

        def map(self, jobs, call, done):
            for job in jobs:
                worker = workers[job % self.n]
                done(job, call(SimpleNamespace(encode_tile=SimpleNamespace(remote=worker.encode_tile)), job))

    path = compact(tmp_path / "2x.safetensors")
    upscaler = (path, check_upscaler(path).fingerprint)
    picture = np.random.default_rng(6).integers(0, 256, (16, 24, 3), dtype=np.uint8)

    def encode(n, model):
        return encode_canvas(Pool(n), picture, 96, 64, info, 32, put=lambda array: array, upscaler=model)

    one = encode(1, upscaler)
    np.testing.assert_array_equal(encode(2, upscaler), one)
    assert np.abs(encode(1, None) - one).mean() > 1e-3
