"""The render's memory: a zarr v3 group at any fsspec URL.

Arrays: `noise` (C, H, W float32, the initial latent), `latent` (C, H, W float32, the latent after
`completed_step` steps), `image` (H, W, 3 uint8, the decoded picture). Attributes: `spec` (the
pixel-affecting fields), `fingerprint` (the model's), `completed_step`, `decoded`.

A step is committed in two phases so that an interruption at any point leaves a consistent store:
the new latent goes to `latent_next` and `next_step` is recorded, then it is copied into `latent`
and `completed_step` advances. A reader that finds `next_step > completed_step` knows
`latent_next` is whole and uses it. This is the only module that imports zarr or fsspec.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gigacanvas.errors import RenderError, UsageError

LATENT_CHUNK = 128  # latent pixels per chunk side: 1 MiB per 16-channel float32 chunk
IMAGE_CHUNK = 1024


def _check_protocol(url: str) -> str:
    import fsspec
    from fsspec.core import split_protocol

    protocol = split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError as exc:
        raise UsageError(f"store {url} uses an unknown protocol '{protocol}'; use a path or file://, memory://, s3://, gs://") from exc
    except ImportError as exc:
        raise UsageError(f"store {url} needs a package for '{protocol}' ({exc}); install it and retry") from exc
    return protocol


class LatentStore:
    """One render's arrays and attributes; see the module docstring for the layout."""

    def __init__(self, url: str):
        self.url = url
        self.protocol = _check_protocol(url)
        self._group = None

    @property
    def _options(self) -> dict | None:
        # file:// URLs go through fsspec, which must be told to make the store's folders
        return {"auto_mkdir": True} if self.protocol == "file" and "://" in self.url else None

    def _open(self, mode: str):
        import zarr

        try:
            return zarr.open_group(store=self.url, mode=mode, zarr_format=3, storage_options=self._options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return None
        except Exception as exc:  # noqa: BLE001 - any backend failure is one clear line
            raise UsageError(f"store {self.url} cannot be opened ({exc.__class__.__name__}: {exc})") from exc

    @property
    def group(self):
        if self._group is None:
            self._group = self._open("r+")
            if self._group is None:
                raise RenderError(f"store {self.url} does not exist")
        return self._group

    def exists(self) -> bool:
        """Whether a gigacanvas store is at the URL (a foreign zarr group does not count)."""
        group = self._open("r")
        return group is not None and "spec" in group.attrs

    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    def create(self, spec: dict, fingerprint: str, channels: int, height: int, width: int, scale: int) -> None:
        """A fresh store for `spec`, replacing whatever was at the URL."""
        import zarr

        self._group = None
        try:
            group = zarr.open_group(
                store=self.url,
                mode="w",
                zarr_format=3,
                storage_options=self._options,
            )
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"store {self.url} cannot be created ({exc.__class__.__name__}: {exc})") from exc
        # Latents are noise-like floats: zstd saves ~6% and costs most of a step's write time.
        latent = dict(
            shape=(channels, height, width), chunks=(channels, LATENT_CHUNK, LATENT_CHUNK), dtype="float32", compressors=None
        )
        for name in ("noise", "latent", "latent_next"):
            group.create_array(name, **latent)
        group.create_array(
            "image",
            shape=(height * scale, width * scale, 3),
            chunks=(IMAGE_CHUNK, IMAGE_CHUNK, 3),
            dtype="uint8",
        )
        group.attrs.update(
            {"spec": spec, "fingerprint": fingerprint, "completed_step": 0, "next_step": 0, "decoded": False}
        )
        self._group = group

    def set_attrs(self, **attrs: Any) -> None:
        self.group.attrs.update(attrs)

    def write_noise(self, noise: np.ndarray) -> None:
        self.group["noise"][...] = noise
        self.group["latent"][...] = noise

    def read_noise(self) -> np.ndarray:
        return self.group["noise"][...]

    def commit_latent(self, latent: np.ndarray, step: int) -> None:
        """Record `latent` as the state after `step` steps, in two crash-safe phases."""
        group = self.group
        group["latent_next"][...] = latent
        group.attrs["next_step"] = step
        group["latent"][...] = latent
        group.attrs["completed_step"] = step

    def read_latent(self) -> tuple[np.ndarray, int]:
        """The newest whole latent and the number of steps it has had."""
        attrs = self.group.attrs
        if attrs["next_step"] > attrs["completed_step"]:
            return self.group["latent_next"][...], int(attrs["next_step"])
        return self.group["latent"][...], int(attrs["completed_step"])

    def write_image(self, image: np.ndarray) -> None:
        self.group["image"][...] = image
        self.group.attrs["decoded"] = True

    def read_image(self) -> np.ndarray:
        return self.group["image"][...]
