"""Stable Diffusion XL behind the `ModelAdapter` interface.

Each call mirrors `diffusers.StableDiffusionXLPipeline.__call__` (the pipeline's own
`encode_prompt` for the two CLIP encoders and the pooled embedding, the doubled CFG batch with
negatives first, `uncond + g * (cond - uncond)`, the size and crop ids as `add_time_ids`, the
VAE's scale and its fp16 upcast) so that a render whose one tile covers the whole latent
reproduces the pipeline; the reference-equivalence test holds us to it. The scheduler is the
folder's (Euler by default): the generic loop scales the first noise by its `init_noise_sigma`
and the model input by its `scale_model_input` (cluster/steploop.py, cluster/reducer.py), so
`predict` gets the latent as the UNet takes it.

Size conditioning, and why: each tile is conditioned as a whole picture of its own size,
original size = target size = the tile's pixels, crop (0, 0) (the pipeline's defaults for a
picture that size). SDXL learnt `original_size` as the source's resolution (small ones give
blurry pictures) and `crops_coords_top_left` as how far the training crop was cut off (non-zero
ones give objects cut at the edge); the canvas's size and a tile's offset on it would be far
outside what it saw (a 16K poster's offsets are tens of thousands of pixels), and would make a
tile's prediction depend on where it lies, not only on its content, as Flux's tile-local
positions avoid too. With one tile covering the canvas, these are the pipeline's own ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gigacanvas.actors.adapter import FolderAdapter
from gigacanvas.actors.checkpoint import load_denoiser
from gigacanvas.actors.models.sdxl import FAMILY
from gigacanvas.actors.precision import apply_precision, dtypes


@dataclass(frozen=True)
class SDXLConditioning:
    """Prompt embeddings for one render, on the CPU: both encoders' hidden states (concatenated),
    bigG's pooled projection, and with CFG the negative prompt's."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    negative_pooled: torch.Tensor | None


def time_ids(h_px: int, w_px: int) -> list[int]:
    """`add_time_ids` of a tile of h_px x w_px pixels: original size, crop, target size (see the
    module docstring), in the pipeline's (height, width) order."""
    return [h_px, w_px, 0, 0, h_px, w_px]


class SDXLAdapter(FolderAdapter):
    """SDXL from a diffusers folder; weights are loaded per role on first use."""

    def __init__(self, info, device="cpu", precision="fp32"):
        super().__init__(info, device, precision)
        # The text encoders follow the mode's compute dtype but are never stored in FP8; the VAE
        # too, but for fp16 with a VAE that overflows in it (`vae_dtype`).
        self.dtype = dtypes(precision, device)[1]

    def make_scheduler(self, steps: int, latent_h: int, latent_w: int, scheduler: str | None = None):
        """The folder's scheduler (or `scheduler`'s class from its config) set to `steps` (SDXL's
        schedule does not depend on the size)."""
        scheduler = self._scheduler(scheduler)
        scheduler.set_timesteps(steps, device="cpu")  # as retrieve_timesteps without custom timesteps
        return scheduler

    def encode_prompt(self, prompt: str, negative_prompt: str, guidance: float) -> SDXLConditioning:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(
            self._path(), unet=None, vae=None, torch_dtype=self.dtype, use_safetensors=True, add_watermarker=False
        ).to(self.device)
        self._fuse_text_loras(pipe)
        with torch.inference_mode():
            embeds, neg, pooled, neg_pooled = pipe.encode_prompt(
                prompt=prompt,
                prompt_2=None,
                device=torch.device(self.device),
                num_images_per_prompt=1,
                do_classifier_free_guidance=guidance > 1,
                negative_prompt=negative_prompt,
            )
        del pipe  # the text encoders are needed once per render: give their memory back now

        def cpu(t):
            return None if t is None else t.detach().to("cpu")

        return SDXLConditioning(cpu(embeds), cpu(pooled), cpu(neg), cpu(neg_pooled))

    def vae_dtype(self, config: dict) -> torch.dtype:
        """The VAE's dtype: SDXL's VAE overflows in fp16 (`force_upcast` in its config), so as the
        pipeline it runs in fp32 then; bf16 has fp32's range and stays. A fixed VAE (force_upcast
        false, as madebyollin/sdxl-vae-fp16-fix ships) runs in fp16."""
        if self.dtype == torch.float16 and config.get("force_upcast", True):
            return torch.float32
        return self.dtype

    def _load(self, role: str):
        if role not in self._modules:
            if role == "transformer":
                module = self._load_unet()
            else:
                from diffusers import AutoencoderKL

                from gigacanvas.actors.configs import read_json

                dtype = self.vae_dtype(read_json(Path(self._path(role)) / "config.json", "config"))
                module = AutoencoderKL.from_pretrained(self._path(role), torch_dtype=dtype, use_safetensors=True)
            self._modules[role] = module.to(self.device).eval()
            if role == "transformer":
                apply_precision(module, self.precision, self.device)
        return self._modules[role]

    def _load_unet(self):
        from diffusers import UNet2DConditionModel

        return load_denoiser(UNet2DConditionModel, Path(self.info.path), self.info.transformer_file, FAMILY, self.precision, self.device, "SDXL UNet", self.info.loras)

    def predict(self, tiles: np.ndarray, timestep: float, cond: SDXLConditioning, guidance: float) -> np.ndarray:
        unet = self._load("transformer")
        x = torch.from_numpy(tiles).to(self.device, self.dtype)
        b, _, h, w = x.shape
        f = self.info.vae_scale_factor

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.to(self.device, self.dtype).expand(b, *t.shape[1:])

        embeds, pooled = rows(cond.prompt_embeds), rows(cond.pooled)
        ids = torch.tensor([time_ids(h * f, w * f)], dtype=self.dtype, device=self.device).expand(b, -1)
        cfg = guidance > 1 and unet.config.time_cond_proj_dim is None  # as the pipeline decides
        if cfg:  # the pipeline's order: negatives first, then positives
            x = torch.cat([x, x])
            embeds = torch.cat([rows(cond.negative_prompt_embeds), embeds])
            pooled = torch.cat([rows(cond.negative_pooled), pooled])
            ids = torch.cat([ids, ids])
        t = torch.full((x.shape[0],), timestep, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            out = unet(
                x,
                t,
                encoder_hidden_states=embeds,
                added_cond_kwargs={"text_embeds": pooled, "time_ids": ids},
                return_dict=False,
            )[0]
            if cfg:
                uncond, text = out.chunk(2)
                out = uncond + guidance * (text - uncond)
        return out.float().cpu().numpy()
