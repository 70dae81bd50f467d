"""Full-size transformers of every family, by name, built without their weights.

Benchmarks and memory checks need the real architectures (SD3.5 Large: 8 B parameters) but no
weights can be downloaded: each family lists its configs (`Family.architectures`), and here they
are built on the meta device (counts and byte plans) or with random weights laid out as the
loader lays out a precision mode. The class is the config's `_class_name`, as in a model folder.
"""

from __future__ import annotations

from gigacanvas.actors.models import families, load
from gigacanvas.errors import UsageError


def architectures() -> dict[str, dict]:
    """Every family's full-size transformer configs by name ("sd3.5-large", ...)."""
    return {name: config for f in families() if f.architectures for name, config in load(f.architectures).items()}


def architecture(name: str) -> dict:
    """The config of the architecture called `name`."""
    known = architectures()
    if name not in known:
        raise UsageError(f"architecture {name!r} is unknown; choose one of {', '.join(known)}")
    return dict(known[name])


def meta_transformer(config: dict):
    """The architecture on the meta device: counts and byte plans, no memory."""
    import diffusers
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=True):
        return getattr(diffusers, config["_class_name"]).from_config(config)


def random_transformer(config: dict, mode: str, device: str, std: float = 0.02, compute_dtype=None):
    """The architecture with random weights laid out as the loader lays out `mode` on `device`.

    Each tensor is drawn straight into its final dtype on `device`, one at a time, so building an
    FP8 model never holds its bf16 copy; then the mode's precision hooks are applied. Values are
    small normals: weights don't change speed or size, so benchmarks on them are honest.
    """
    import torch

    from gigacanvas.actors.precision import apply_precision, dtype_rule, dtypes

    model = meta_transformer(config)
    compute = dtypes(mode, device)[1]
    if compute_dtype is not None and mode == "fp8":  # e.g. a GPU's bf16 layout measured on a CPU
        compute = compute_dtype
    dtype_for = dtype_rule(model, mode, device, compute)
    state = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        value = torch.empty(tensor.shape, dtype=compute, device=device).normal_(0.0, std)
        state[name] = value.to(dtype_for(name))
    model.load_state_dict(state, strict=True, assign=True)
    del state
    apply_precision(model, mode, device, compute)
    return model.eval()
