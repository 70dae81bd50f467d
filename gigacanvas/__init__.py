"""gigacanvas: very large pictures from diffusion models, denoised as tiles on Ray actors."""

from gigacanvas.cluster.render import RenderResult, render
from gigacanvas.cluster.spec import RenderSpec, build_spec
from gigacanvas.errors import GigacanvasError, RenderError, UsageError

__version__ = "0.1.0"

__all__ = ["GigacanvasError", "RenderError", "RenderResult", "RenderSpec", "UsageError", "build_spec", "render"]
