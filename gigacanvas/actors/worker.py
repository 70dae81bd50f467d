"""The model worker: one per GPU (or CPU slice), holding every role a render needs.

`Worker` is a plain object so tests drive it without Ray; `worker_actor_class()` is the Ray shell
around it. One worker type instead of separate encoder, denoiser and decoder actors keeps one model
copy per device and lets the VAE decode reuse the actors that just finished denoising, so the decode
at the end never waits for new placements on a busy cluster.

Start-up is three calls: `capabilities()` (cheap, no weights) so the driver can pick one precision
for every actor, `prepare()` (this node's copy of the model: fetched, or checked to be readable,
and fingerprinted against the plan; see nodemodel.py), then `load(precision)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gigacanvas.actors.adapter import ModelInfo
from gigacanvas.actors.loading import load_adapter, quiet_libraries
from gigacanvas.actors.nodemodel import localize
from gigacanvas.actors.precision import Capabilities, probe
from gigacanvas.tiling.grid import Window


class Worker:
    """Encodes once, predicts tile batches, decodes latent tiles, for one model."""

    def __init__(self, info: ModelInfo, threads: int | None = None):
        quiet_libraries()
        import torch

        if threads:
            # Fixed thread count: CPU matmul reductions split by thread, so it is part of the bits.
            torch.set_num_threads(threads)
        self.info = info
        self.adapter = None
        self._cond: Any = None
        self._prepared = False
        self._device: str | None = None  # where `load` put the model (the upscaler runs there too)
        self._peaks: dict[str, float] = {}  # the decode stages' peak own memory, MiB (memwatch.py)

    def capabilities(self) -> Capabilities:
        return probe()

    def prepare(self) -> None:
        """Make this node's copy of the planned model ready, or fail in one line naming the node."""
        if not self._prepared:
            self.info = localize(self.info, _node())
            self._prepared = True

    def load(self, precision: str) -> str:
        """Load the resident roles in `precision` (a resolved mode); returns the device.

        A worker kept from an earlier render of this process (cluster/warm.py) keeps its model if
        the precision is the same, reloading only the roles that render released; what belongs to
        one render (its conditioning, its decode's memory figures) starts afresh either way.
        """
        self.prepare()
        self._cond = None
        self._peaks = {}
        caps = probe()
        if self.adapter is None or self.adapter.precision != precision or self._device != caps.device:
            self.adapter = None  # the old model goes before the new one loads
            self.adapter = load_adapter(self.info, caps.device, precision)
        self.adapter.preload()
        self._device = caps.device
        return caps.device

    def join(self, precision: str, cond: Any) -> str:
        """A replacement's start: load like the others, take the render's conditioning."""
        device = self.load(precision)
        self.set_conditioning(cond)
        return device

    def encode(self, prompt: str, negative_prompt: str, guidance: float) -> Any:
        cond = self._loaded().encode_prompt(prompt, negative_prompt, guidance)
        self._loaded().release("text")
        return cond

    def encode_prompts(self, prompts: tuple[str, ...], negative_prompt: str, guidance: float) -> Any:
        """Regional prompts' conditioning (actors/regional.py), the text encoders loaded once for all."""
        from gigacanvas.actors.regional import RegionalConditioning

        conds = tuple(self._loaded().encode_prompt(p, negative_prompt, guidance) for p in prompts)
        self._loaded().release("text")
        return RegionalConditioning(conds)

    def set_conditioning(self, cond: Any) -> None:
        """Keeps the render's conditioning so each tile call need not ship it again."""
        self._cond = cond

    def predict(self, tiles: np.ndarray, timestep: float, guidance: float, regions=None) -> np.ndarray:
        """Guided predictions for a tile batch; with `regions`, (tiling/regions.py's RegionLayout,
        the tiles' windows), once per prompt each tile touches, blended (actors/regional.py)."""
        if self._cond is None:
            raise RuntimeError("set_conditioning must run before predict")
        adapter = self._loaded()
        if regions is None:
            return adapter.predict(tiles, timestep, self._cond, guidance)
        from gigacanvas.actors.regional import predict_regional

        layout, windows = regions
        return predict_regional(
            lambda batch, cond: adapter.predict(batch, timestep, cond, guidance), tiles, windows, layout, self._cond
        )

    def predict_bands(self, cuts, timestep: float, guidance: float, *parts, regions=None) -> tuple:
        """`predict` on windows joined from the bands' rows, its output cut back per band.

        `cuts` and `parts` come from the band reducers (tiling/bands.py); returns one list of
        pieces per band, then the number of tiles (the only thing the driver fetches).
        """
        from gigacanvas.tiling.bands import cut_rows, join_rows

        preds = self.predict(join_rows(parts, cuts), timestep, guidance, regions)
        return (*cut_rows(preds, cuts), len(preds))

    def decode(self, latents: np.ndarray) -> np.ndarray:
        return self._loaded().decode(latents)

    def encode_tile(
        self, image: np.ndarray, canvas: tuple[int, int], window: Window, halo: int, wrap: tuple[bool, bool] = (False, False),
        upscaler: tuple[str, str] | None = None,
    ) -> np.ndarray:
        """Latent `window` (latent pixels) of `image` upscaled to `canvas` (h, w pixels) and
        encoded with a `halo` of latent pixels around it (actors/vaeencode.py), on a torus along
        `wrap`'s axes (rows, columns): (C, h, w) float32. `upscaler`: (path, fingerprint) of the
        upscale model that makes the window's pixels (actors/upscaler.py), loaded once per process."""
        from gigacanvas.actors.vaeencode import encode_window

        model = None
        if upscaler is not None:
            from gigacanvas.actors.upscaler import load_upscaler

            model = load_upscaler(*upscaler, self._device or probe().device, _node())
        return encode_window(self._loaded().encode, image, canvas, window, halo, self.info.vae_scale_factor, wrap, model)

    # The seamless decode (cluster/decode.py drives it; actors/vaedecode.py computes it).

    def decode_layout(self):
        """The decoder's TailLayout (tiling/decodetiles.py): what the driver plans passes with."""
        return self._loaded().decode_stages().layout

    def decode_head(self, *bands: np.ndarray, wrap: tuple[bool, bool] = (False, False)) -> tuple[np.ndarray, tuple[int, ...]]:
        """The head's output for the latent given as row bands (so the driver never holds it
        whole), and its shape: the caller keeps the first in the object store, fetches the second.
        `wrap` (rows, columns): the canvas is a torus along those axes."""
        from gigacanvas.actors.memwatch import watched

        with watched(self._peaks, "head"):
            head = self._loaded().decode_stages().head(np.concatenate(bands, axis=1), wrap)
        return head, head.shape

    def decode_run(self, step, window, core, known, part_windows, *parts: np.ndarray, torus=(None, None)):
        """One tile of a decode pass (tiling/decodepasses.py's DecodePass) on `window` (latent
        pixels on the canvas), pasted from `parts` (the head's output or the last checkpoint's
        cores) over `part_windows`, with `torus` = (height or None, width or None) the latent
        lengths of the wrapped axes: GroupNorm moments with a probe; its pixels as (h, w, 3) uint8
        after the last segment; else (checkpoint or None, shape), of which the caller keeps the
        first in the object store and fetches the shape."""
        from gigacanvas.actors.memwatch import watched
        from gigacanvas.actors.vaedecode import to_uint8
        from gigacanvas.tiling.decodetiles import paste

        stages = self._loaded().decode_stages()
        layout = stages.layout
        with watched(self._peaks, "tail"):
            x = paste(window, list(zip(part_windows, parts)), layout.scales[step.start], *torus)
            wrap = (torus[0] is not None, torus[1] is not None)
            out = stages.run(x, core, step.start, step.end, known, step.probe, wrap)
            if step.probe is not None:
                return out
            if step.end == layout.segments - 1:
                return to_uint8(out)
            return (out if step.keep else None), out.shape

    def decode_sample(self, step, crops, known, padding, part_windows, *parts: np.ndarray, torus=(None, None)) -> list:
        """The fast mode's estimate of every GroupNorm past `known`: the `crops`
        (tiling/decodetiles.py's SampleCrops) pasted from `parts` at boundary `step.start` and
        decoded together on this worker (actors/vaedecode.py's `sample`), padded circularly along
        `padding`'s axes (tiling/decodetiles.py's `crop_padding`)."""
        from gigacanvas.actors.memwatch import watched
        from gigacanvas.tiling.decodetiles import paste

        stages = self._loaded().decode_stages()
        scale = stages.layout.scales[step.start]
        parts_at = list(zip(part_windows, parts))
        with watched(self._peaks, "sample"):
            windows = np.stack([paste(c.window, parts_at, scale, *torus) for c in crops])
            return stages.sample(windows, [c.pieces for c in crops], step.start, known, padding)

    def decode_peaks(self) -> dict[str, float]:
        """{"head": MiB, "tail": MiB, "sample": MiB, and each one's "... start"}: this process's own
        memory in each decode stage it ran (actors/memwatch.py)."""
        return dict(self._peaks)

    def _loaded(self):
        if self.adapter is None:
            raise RuntimeError("load must run before the worker is used")
        return self.adapter


def _node() -> str:
    """'node 10.0.0.7 (node id 3f2a9c0e1b2d...)' inside a Ray worker; 'this machine' outside Ray."""
    import ray

    if not ray.is_initialized():
        return "this machine"
    node_id = ray.get_runtime_context().get_node_id()
    return f"node {ray.util.get_node_ip_address()} (node id {node_id[:12]}...)"


def worker_actor_class():
    """The Ray actor class, made on demand so importing this module never needs Ray."""
    import ray

    return ray.remote(max_restarts=0)(Worker)
