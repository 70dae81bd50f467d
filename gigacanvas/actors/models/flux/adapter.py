"""Flux.1 ([dev] and [schnell]) behind the `ModelAdapter` interface.

Each call mirrors `diffusers.FluxPipeline.__call__` (prompt encoding with CLIP's pooled output and
T5's sequence, the sigmas `linspace(1, 1/steps)` shifted by `mu`, the transformer called with
`timestep / 1000` and the distilled guidance, the VAE's scale and shift) so that a render whose
one tile covers the whole latent reproduces the pipeline; the reference-equivalence test holds us
to it. What differs from the pipeline is where packing happens: gigacanvas tiles, blends, noises
and steps the unpacked (B, 16, h, w) latent, and `predict` packs each batch into 2x2 tokens and
unpacks the velocities. The flow-matching Euler step is per element, so stepping the unpacked
latent is the pipeline's step on the same numbers in another order.

Two choices, and why:
- Positions: each tile gets tile-local latent image ids (rows 0..h/2-1, columns 0..w/2-1), the
  ids the pipeline gives a picture the tile's size, never canvas-global ones. Every training
  picture's ids start at 0; RoPE makes image-to-image attention depend only on differences, but
  the text tokens sit at position 0, so canvas-global ids would put a far tile's image tokens
  hundreds of positions from its text, a distance Flux never saw. Tile-local ids also make a
  tile's prediction depend on its content alone (not on where it lies, nor on the shifted
  windows' phase or a wrapped axis's join), and give the pipeline's ids for one whole tile.
- The timestep shift: `mu` follows the token count of the tile the model sees, not of the
  canvas (see `make_scheduler`).

A negative prompt is refused at planning (`sizes` in this family's `__init__`): Flux.1 is
guidance-distilled, [dev] takes `--guidance` as an input of the transformer and runs one pass per
step; a negative prompt would do nothing, yet still change the render's identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gigacanvas.actors.adapter import FolderAdapter
from gigacanvas.actors.checkpoint import load_denoiser
from gigacanvas.actors.models.flux import FAMILY, NEGATIVE, PACK
from gigacanvas.actors.precision import apply_precision, dtypes
from gigacanvas.errors import UsageError


@dataclass(frozen=True)
class FluxConditioning:
    """Prompt embeddings for one render, on the CPU: T5's sequence, CLIP's pooled vector and the
    text tokens' position ids (all zero, as the pipeline makes them)."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C): the pipeline's `_pack_latents`, row-major 2x2 tokens."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PACK, PACK, w // PACK, PACK).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // PACK) * (w // PACK), c * PACK * PACK)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack` for a latent of h x w (latent pixels)."""
    b, _, channels = tokens.shape
    x = tokens.view(b, h // PACK, w // PACK, channels // (PACK * PACK), PACK, PACK).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // (PACK * PACK), h, w)


def image_ids(h: int, w: int) -> torch.Tensor:
    """Tile-local position ids of an h x w latent's tokens, (h/2 * w/2, 3): (0, row, column), as the
    pipeline's `_prepare_latent_image_ids` gives a picture of that size (see the module docstring)."""
    ids = torch.zeros(h // PACK, w // PACK, 3)
    ids[..., 1] += torch.arange(h // PACK)[:, None]
    ids[..., 2] += torch.arange(w // PACK)[None, :]
    return ids.reshape(-1, 3)


class FluxAdapter(FolderAdapter):
    """Flux.1 from a diffusers folder; weights are loaded per role on first use."""

    MAX_SEQUENCE_LENGTH = 512  # T5 tokens: FluxPipeline's default

    def __init__(self, info, device="cpu", precision="fp32"):
        super().__init__(info, device, precision)
        # The text encoders and the VAE follow the mode's compute dtype but are never stored in FP8.
        self.dtype = dtypes(precision, device)[1]

    def make_scheduler(self, steps: int, latent_h: int, latent_w: int, scheduler: str | None = None):
        """The pipeline's schedule for a picture of `latent_h` x `latent_w`: the tile the model sees.

        Flux shifts its schedule by `mu`, a linear function of the image's token count, because a
        larger picture holds more redundant tokens and needs more steps at high noise to settle its
        layout. What the transformer sees is one tile at a time, and every tile gets the schedule's
        noise levels: a tile denoised on the canvas's shift (for a 16K poster, far beyond the
        training range) would spend its steps as if it held millions of tokens, and come out
        under-denoised. The shift of the tile size is the one the model was trained to expect for
        what it sees; the canvas size does not enter it, so a poster is the same tiles at any size.
        """
        from diffusers.pipelines.flux.pipeline_flux import (
            calculate_shift,
            retrieve_timesteps,
        )

        scheduler = self._scheduler(scheduler)
        sigmas = np.linspace(1.0, 1 / steps, steps)
        if scheduler.config.get("use_flow_sigmas", False):
            sigmas = None
        mu = calculate_shift(
            (latent_h // PACK) * (latent_w // PACK),
            scheduler.config.get("base_image_seq_len", 256),
            scheduler.config.get("max_image_seq_len", 4096),
            scheduler.config.get("base_shift", 0.5),
            scheduler.config.get("max_shift", 1.15),
        )
        retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, mu=mu)
        return scheduler

    def encode_prompt(self, prompt: str, negative_prompt: str, guidance: float) -> FluxConditioning:
        if negative_prompt:  # planning refuses it first; this guards a direct caller
            raise UsageError(f"negative_prompt is not taken by this model: {NEGATIVE}")
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained(
            self._path(), transformer=None, vae=None, torch_dtype=self.dtype, use_safetensors=True
        ).to(self.device)
        self._fuse_text_loras(pipe)
        with torch.inference_mode():
            embeds, pooled, text_ids = pipe.encode_prompt(
                prompt=prompt,
                prompt_2=None,
                device=torch.device(self.device),
                max_sequence_length=self.MAX_SEQUENCE_LENGTH,
            )
        del pipe  # the text encoders are needed once per render: give their memory back now
        return FluxConditioning(*(t.detach().to("cpu") for t in (embeds, pooled, text_ids)))

    def _load(self, role: str):
        if role not in self._modules:
            if role == "transformer":
                module = self._load_transformer()
            else:
                from diffusers import AutoencoderKL

                module = AutoencoderKL.from_pretrained(self._path(role), torch_dtype=self.dtype, use_safetensors=True)
            self._modules[role] = module.to(self.device).eval()
            if role == "transformer":
                apply_precision(module, self.precision, self.device)
        return self._modules[role]

    def _load_transformer(self):
        from diffusers import FluxTransformer2DModel

        return load_denoiser(FluxTransformer2DModel, Path(self.info.path), self.info.transformer_file, FAMILY, self.precision, self.device, "Flux transformer", self.info.loras)

    def predict(self, tiles: np.ndarray, timestep: float, cond: FluxConditioning, guidance: float) -> np.ndarray:
        transformer = self._load("transformer")
        b, _, h, w = tiles.shape
        x = pack(torch.from_numpy(tiles).to(self.device, self.dtype))

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.to(self.device, self.dtype).expand(b, *t.shape[1:])

        # As the pipeline: the timestep in the latents' dtype, then / 1000; guidance in float32.
        t = torch.full((b,), timestep, dtype=torch.float32, device=self.device).to(self.dtype)
        g = torch.full((b,), guidance, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            out = transformer(
                hidden_states=x,
                timestep=t / 1000,
                guidance=g if transformer.config.guidance_embeds else None,
                pooled_projections=rows(cond.pooled),
                encoder_hidden_states=rows(cond.prompt_embeds),
                txt_ids=cond.text_ids.to(self.device, self.dtype),
                img_ids=image_ids(h, w).to(self.device, self.dtype),
                return_dict=False,
            )[0]
        return unpack(out, h, w).float().cpu().numpy()
