"""gigacanvas: very large pictures from diffusion models, denoised as tiles on Ray actors."""

from gigacanvas.cluster.render import RenderResult, render
from gigacanvas.cluster.spec import RenderSpec, build_spec
from gigacanvas.cluster.warm import keep_workers, release_workers
from gigacanvas.errors import GigacanvasError, RenderError, UsageError
from gigacanvas.version import __version__

__all__ = ["GigacanvasError", "RenderError", "RenderResult", "RenderSpec", "UsageError", "__version__", "build_spec", "keep_workers", "release_workers", "render"]
