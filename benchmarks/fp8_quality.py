"""FP8 quality on the tiny model: the same spec rendered in fp32, fp8 (layerwise casting of the
fp32 folder), fp8 from a scaled FP8 file (each scale spelling) and bf16; PSNR and max error of the
8-bit pictures against fp32. The tiny model's weights are random, so these figures bound the
numerical error of the FP8 path; they say nothing about how real SD3.5 pictures look in FP8.

    .venv/bin/python benchmarks/fp8_quality.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from gigacanvas import RenderSpec, render
from gigacanvas.actors.convert import convert_transformer
from gigacanvas.actors.loading import tiny_model_path

SPEC = dict(prompt="a lighthouse at dawn", negative_prompt="blurry", width=512, height=512, steps=8, guidance=4.5, seed=1)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.float64)


def main() -> None:
    tiny = str(tiny_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {"fp32": dict(precision="fp32"), "fp8 (folder)": dict(precision="fp8"), "bf16": dict(precision="bf16")}
        for scale in ("weight_scale", "scale_weight"):
            path = convert_transformer(tiny, str(tmp / f"{scale}.safetensors"), "fp8", scale)
            runs[f"fp8 file ({scale})"] = dict(precision="fp8", model=str(path), base_model=tiny, strict_precision=True)
        images = {}
        for name, extra in runs.items():
            extra.setdefault("model", tiny)
            out = tmp / f"{len(images)}.png"
            render(RenderSpec(out=str(out), actors=1, **SPEC, **extra), progress=False, notify=lambda m: None)
            images[name] = pixels(out)
    ref = images["fp32"]
    print(f"tiny model, {SPEC['width']}x{SPEC['height']}, {SPEC['steps']} steps, CPU; 8-bit pictures vs fp32")
    print(f"{'mode':26} {'PSNR dB':>8} {'max |err|':>10}")
    for name, image in images.items():
        if name == "fp32":
            continue
        mse = ((image - ref) ** 2).mean()
        psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
        print(f"{name:26} {psnr:8.1f} {np.abs(image - ref).max():10.0f}")


if __name__ == "__main__":
    main()
