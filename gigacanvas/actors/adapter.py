"""The small interface between gigacanvas and one model family.

The step loop, the tiling and the store know no family: they see latent channels, a VAE scale
factor, the model's native tile and defaults, a scheduler, and three capabilities (encode a
prompt once, predict guided model outputs for a batch of latent tiles, decode latent tiles to
pixels). The scheduler need not be flow matching: the loop scales the first noise by its
`init_noise_sigma` and the model input by its `scale_model_input`, as the pipelines do. Each family is a `ModelAdapter` subclass in its home under `actors/models/`, named by its
`Family`. Latents cross the interface unpacked, (B, C, h, w): a family that packs patches into
tokens (Flux) packs and unpacks inside `predict`, and nothing in `cluster/` or `tiling/` knows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What the planner needs to know about a model, read from its configs without its weights."""

    family: str
    path: str
    fingerprint: str
    latent_channels: int
    vae_scale_factor: int
    patch_size: int  # in latent pixels: tile sides must be multiples of it
    native_tile_px: int  # the side the model was trained at
    transformer_file: str | None = None  # a single-file transformer replacing the folder's
    weights_precision: str = "fp32"  # how the transformer weights are stored: fp8, bf16, ..., gguf
    # The largest tile side, in pixels, the transformer's positional table covers (SD3 crops a
    # table of pos_embed_max_size patches per side; larger inputs raise); None: no such limit.
    max_tile_px: int | None = None
    # Settings of a family that no config file holds (the simulated model's seconds per tile), as
    # sorted (name, value) pairs: hashable and picklable like the rest of this class.
    options: tuple[tuple[str, float], ...] = ()
    # Where each node gets the files that `path` and `transformer_file` name on the driver only:
    # (field, source, cache key), source a URL each node fetches into its cache under that key
    # (actors/nodemodel.py) or the built-in tiny model, built on each node. Empty: plain paths.
    sources: tuple[tuple[str, str, str], ...] = ()
    # The model's own render defaults, as sorted (spec field, value) pairs, used where the user
    # gives none (steps, guidance) and then recorded in the picture; unlisted fields take the spec's
    # generic defaults. Filled by the family's `sizes` from the configs.
    defaults: tuple[tuple[str, Any], ...] = ()
    # Spec fields this model takes no value for but its default (a negative prompt for a
    # guidance-distilled model), as (field, why): planning refuses another value in one line.
    refused: tuple[tuple[str, str], ...] = ()
    # LoRAs every actor fuses into the model as it loads it (actors/lora.py), as (local path,
    # weight, content fingerprint), in the order given; filled at planning from `--lora`.
    loras: tuple[tuple[str, float, str], ...] = ()

    @property
    def align_px(self) -> int:
        """Pixel sizes must be multiples of this so every tile splits into whole patches."""
        return self.vae_scale_factor * self.patch_size


class ModelAdapter(ABC):
    """One model family's loading, conditioning, denoising and decoding.

    Loading is split by role so an actor holds only what its role needs: the text encoders are
    loaded, used once per render and dropped, while the transformer and the VAE stay resident.
    Arrays cross this interface as float32 numpy (C-first latents, [-1, 1] pixels) so callers never
    depend on the device or dtype a model runs in.
    """

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32"):
        self.info = info
        self.device = device
        self.precision = precision  # a resolved mode (see precision.py), never "auto"

    @abstractmethod
    def make_scheduler(self, steps: int, latent_h: int, latent_w: int, scheduler: str | None = None) -> Any:
        """A diffusers scheduler with timesteps set for `latent_h` x `latent_w` inputs: the tile
        the model sees (the tile size, clipped to the canvas), not the canvas. A schedule that
        depends on the picture's size (resolution-dependent shifting) is for what the model
        denoises at once; one tile of the plan equals the whole canvas only when it covers it.
        `scheduler`: a diffusers class name (`--scheduler`, checked at planning against the
        family's `schedulers`) to use instead of the model's own, configured from its config."""

    @abstractmethod
    def encode_prompt(self, prompt: str, negative_prompt: str, guidance: float) -> Any:
        """Conditioning for the whole render (picklable: it travels through the object store)."""

    @abstractmethod
    def predict(self, tiles: np.ndarray, timestep: float, cond: Any, guidance: float) -> np.ndarray:
        """Guided model output (what the scheduler steps on: a velocity, noise or v) for a
        (B, C, h, w) batch of latent tiles at `timestep`, the tiles already scaled by the
        scheduler's `scale_model_input` where it has one (cluster/reducer.py)."""

    @abstractmethod
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Pixels in [-1, 1], (B, 3, h * f, w * f), for a (B, C, h, w) batch of latent tiles
        (each tile normalised on its own: the version-1 `blend` decode)."""

    def encode(self, pixels: np.ndarray, wrap: tuple[bool, bool] = (False, False)) -> np.ndarray:
        """Latents (B, C, h / f, w / f), scaled as the denoiser sees them, for (B, 3, h, w) pixels in
        [-1, 1]: the distribution's mean, so the same pixels give the same latents (a refinement's
        start; actors/vaeencode.py); `wrap` (rows, columns): pad circularly along those axes."""
        raise NotImplementedError(f"the {self.info.family} adapter cannot encode pictures")

    @abstractmethod
    def decode_stages(self) -> Any:
        """The seamless decode's stages for this model (`head`, `run`, `sample`, `layout`, a
        tiling/decodepasses.py TailLayout; actors/vaedecode.py's `SeamlessVae` for a diffusers
        AutoencoderKL)."""

    def preload(self) -> None:
        """Load the resident roles now, so start-up fails early and step timings stay honest."""

    def release(self, role: str) -> None:
        """Drop a role's weights (`text`, `transformer`, `vae`) to give their memory back."""


class FolderAdapter(ModelAdapter):
    """What every family served from a diffusers folder shares: weights by role (`_load`, the
    family's), one AutoencoderKL for the blend decode, the refinement's encode and the seamless
    decode's stages, and dropping roles. The latent convention is diffusers' img2img pipelines':
    `(z - shift) * scale` into the denoiser's space, a VAE without a shift factor shifting by 0."""

    def __init__(self, info: ModelInfo, device: str = "cpu", precision: str = "fp32"):
        super().__init__(info, device, precision)
        self._modules: dict[str, Any] = {}
        self._stages: Any = None

    def _path(self, sub: str = "") -> str:
        from pathlib import Path

        return str(Path(self.info.path) / sub)

    def _scheduler(self, name: str | None = None) -> Any:
        """The folder's scheduler, or the diffusers class `name` configured from the folder's
        scheduler config (`Cls.from_config(folder.config)`, as diffusers users swap samplers: the
        noise schedule and prediction type carry over); timesteps not set yet."""
        from pathlib import Path

        import diffusers

        from gigacanvas.actors.configs import read_json

        config = read_json(Path(self._path("scheduler/scheduler_config.json")), "config")
        return getattr(diffusers, name or config["_class_name"]).from_config(config)

    @abstractmethod
    def _load(self, role: str) -> Any:
        """The module of `role` (`transformer` for the denoiser whatever its kind, `vae`, ...),
        loaded on first use and kept in `_modules`."""

    def _fuse_text_loras(self, pipe: Any) -> None:
        """Fuse the text-encoder parts of the render's LoRAs into `pipe`'s encoders (actors/lora.py)."""
        if self.info.loras:
            from gigacanvas.actors import models
            from gigacanvas.actors.lora import denoiser_config, fuse_into_text_encoders

            family = models.family(self.info.family)
            fuse_into_text_encoders(pipe, family, self.info.loras, denoiser_config(self.info, family))

    def decode(self, latents: np.ndarray) -> np.ndarray:
        import torch

        vae = self._load("vae")
        z = torch.from_numpy(latents).to(self.device, vae.dtype)
        with torch.inference_mode():
            z = z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
            pixels = vae.decode(z, return_dict=False)[0]
        return pixels.float().cpu().numpy()

    def encode(self, pixels: np.ndarray, wrap: tuple[bool, bool] = (False, False)) -> np.ndarray:
        import torch

        from gigacanvas.actors.circular import circular_padding

        vae = self._load("vae")
        x = torch.from_numpy(pixels).to(self.device, vae.dtype)
        with torch.inference_mode(), circular_padding(vae, wrap):
            z = vae.encode(x, return_dict=False)[0].mode()  # the mean: see actors/vaeencode.py
            z = (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
        return z.float().cpu().numpy()

    def decode_stages(self) -> Any:
        if self._stages is None:
            from gigacanvas.actors.vaedecode import SeamlessVae

            vae = self._load("vae")
            self._stages = SeamlessVae(vae, self.device, vae.dtype)
        return self._stages

    def preload(self) -> None:
        self._load("transformer")
        self._load("vae")

    def release(self, role: str) -> None:
        self._modules.pop(role, None)
        if role == "vae":
            self._stages = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
