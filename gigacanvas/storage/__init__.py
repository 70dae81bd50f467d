"""Where renders live: the zarr latent store and the output picture."""

from gigacanvas.storage.picture import read_png_spec, write_png
from gigacanvas.storage.store import LatentStore

__all__ = ["LatentStore", "read_png_spec", "write_png"]
