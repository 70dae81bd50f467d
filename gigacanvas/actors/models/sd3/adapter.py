"""Stable Diffusion 3 / 3.5 behind the `ModelAdapter` interface.

Each call mirrors `diffusers.StableDiffusion3Pipeline.__call__` line for line (prompt encoding,
the doubled CFG batch with negatives first, `uncond + g * (cond - uncond)`, the VAE's scale and
shift) so that a render whose single tile covers the whole latent reproduces the pipeline; the
reference-equivalence test holds us to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gigacanvas.actors.adapter import FolderAdapter
from gigacanvas.actors.checkpoint import load_denoiser
from gigacanvas.actors.models.sd3 import FAMILY
from gigacanvas.actors.precision import apply_precision, dtypes


@dataclass(frozen=True)
class SD3Conditioning:
    """Prompt embeddings for one render: positive and (with CFG) negative, on the CPU."""

    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    negative_pooled: torch.Tensor | None


class SD3Adapter(FolderAdapter):
    """SD3/SD3.5 from a diffusers folder; weights are loaded per role on first use."""

    def __init__(self, info, device="cpu", precision="fp32"):
        super().__init__(info, device, precision)
        # The text encoders and the VAE run once per render or per tile at the end: they follow
        # the mode's compute dtype but are never stored in FP8.
        self.dtype = dtypes(precision, device)[1]

    def make_scheduler(self, steps: int, latent_h: int, latent_w: int, scheduler: str | None = None):
        scheduler = self._scheduler(scheduler)
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            seq_len = (latent_h // self.info.patch_size) * (latent_w // self.info.patch_size)
            kwargs["mu"] = calculate_shift(
                seq_len,
                scheduler.config.get("base_image_seq_len", 256),
                scheduler.config.get("max_image_seq_len", 4096),
                scheduler.config.get("base_shift", 0.5),
                scheduler.config.get("max_shift", 1.16),
            )
        scheduler.set_timesteps(steps, device="cpu", **kwargs)
        return scheduler

    def encode_prompt(self, prompt: str, negative_prompt: str, guidance: float) -> SD3Conditioning:
        from diffusers import StableDiffusion3Pipeline

        pipe = StableDiffusion3Pipeline.from_pretrained(
            self._path(), transformer=None, vae=None, torch_dtype=self.dtype, use_safetensors=True
        ).to(self.device)
        self._fuse_text_loras(pipe)
        with torch.inference_mode():
            embeds, neg, pooled, neg_pooled = pipe.encode_prompt(
                prompt=prompt,
                prompt_2=None,
                prompt_3=None,
                negative_prompt=negative_prompt,
                do_classifier_free_guidance=guidance > 1,
                device=torch.device(self.device),
            )
        del pipe  # the text encoders are needed once per render: give their memory back now

        def cpu(t):
            return None if t is None else t.detach().to("cpu")

        return SD3Conditioning(cpu(embeds), cpu(pooled), cpu(neg), cpu(neg_pooled))

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
        from diffusers import SD3Transformer2DModel

        return load_denoiser(SD3Transformer2DModel, Path(self.info.path), self.info.transformer_file, FAMILY, self.precision, self.device, "SD3 transformer", self.info.loras)

    def predict(self, tiles: np.ndarray, timestep: float, cond: SD3Conditioning, guidance: float) -> np.ndarray:
        transformer = self._load("transformer")
        x = torch.from_numpy(tiles).to(self.device, self.dtype)
        b = x.shape[0]

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.to(self.device, self.dtype).expand(b, *t.shape[1:])

        embeds, pooled = rows(cond.prompt_embeds), rows(cond.pooled)
        cfg = guidance > 1
        if cfg:  # the pipeline's order: negatives first, then positives
            x = torch.cat([x, x])
            embeds = torch.cat([rows(cond.negative_prompt_embeds), embeds])
            pooled = torch.cat([rows(cond.negative_pooled), pooled])
        t = torch.full((x.shape[0],), timestep, dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            out = transformer(
                hidden_states=x,
                timestep=t,
                encoder_hidden_states=embeds,
                pooled_projections=pooled,
                return_dict=False,
            )[0]
            if cfg:
                uncond, text = out.chunk(2)
                out = uncond + guidance * (text - uncond)
        return out.float().cpu().numpy()
