"""How much memory a render needs, estimated before anything starts, so a canvas too big fails fast.

The figures are upper-bound estimates from array sizes, not measurements. During the denoise the
driver's node holds the latent canvas in its band reducers (read, the model input a non-flow
sampler scales, scheduler input and output: float32) and their float64 blend sums. The seamless
decode (`exact`, `fast`) holds one latent band and one decoded tile on the driver, whatever the
canvas; version 1's `blend` decode held the float32 picture, the blender's float64 canvases and
the uint8 picture. The larger of the two phases is the peak.
An actor holds its model's weights plus one tile batch's activations. `DRIVER_BASE` covers the
interpreter, torch and Ray's client (measured at about 0.75 GiB here; rounded up).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
DRIVER_BASE = 1 * GIB


@dataclass(frozen=True)
class Budget:
    driver_bytes: int
    denoise_bytes: int
    decode_bytes: int

    def describe(self) -> str:
        return (
            f"driver about {self.driver_bytes / GIB:.1f} GiB (denoise {self.denoise_bytes / GIB:.1f} GiB, "
            f"decode {self.decode_bytes / GIB:.1f} GiB, plus {DRIVER_BASE / GIB:.0f} GiB for Python, torch and Ray)"
        )


def estimate(channels: int, lat_h: int, lat_w: int, scale: int, decode_mode: str = "exact") -> Budget:
    """The driver's peak for a `channels` x `lat_h` x `lat_w` latent decoded at `scale`."""
    cells = lat_h * lat_w
    denoise = cells * channels * (4 * 4 + 8) + cells * 8  # 4 float32 latents, float64 sum; weight sum
    pixels = cells * scale * scale
    if decode_mode == "blend":
        decode = pixels * (3 * 4 + 3 * 8 + 8 + 3 + 3) + cells * channels * 4  # + the latent it decodes
    else:  # a band of the latent (at most LATENT_CHUNK rows) and a tile of the picture (IMAGE_CHUNK)
        decode = lat_w * 128 * channels * 4 + 1024 * 1024 * 3 * 2
    return Budget(DRIVER_BASE + max(denoise, decode), denoise, decode)


def machine_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)
