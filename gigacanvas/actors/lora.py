"""LoRA files: checked in the driver against the model they change, fused into it on every actor.

Reading and applying go through diffusers' own loaders for the family's pipeline class
(`StableDiffusion3Pipeline`, `FluxPipeline`, `StableDiffusionXLPipeline`): its `lora_state_dict`
reads the file and converts what it knows (diffusers/peft keys, kohya's `lora_unet_`/`lora_te*_`
for SDXL and Flux, ...), its `load_lora_into_transformer`/`load_lora_into_unet` and
`load_lora_into_text_encoder` inject the adapter layers, peft (through diffusers' `fuse_lora`)
merges them. Nothing here converts keys by hand.

Fused, then unloaded: each LoRA is loaded as an adapter, merged into the weights with its weight
(`fuse_lora(lora_scale=w)`), and its adapter layers removed, one LoRA after the other. The model
then runs as a plain model (no extra matmuls, no peft hooks), and the denoiser is fused in its
compute dtype BEFORE precision.py stores it in FP8, so an FP8 render carries the LoRA at no
runtime cost (the fused weight is what gets quantised; loading a model with LoRAs therefore holds
the denoiser once in its compute dtype, where an FP8 load without them streams straight into FP8).

Text encoders: diffusers' loader applies a LoRA's text-encoder part for all three families
(SD3: both CLIPs, SDXL: both CLIPs, Flux: the CLIP), so gigacanvas applies it too, fused the same
way when the encoders load; a render without that part would not be the LoRA as trained. What
the loader would silently skip (keys for no component it loads, such as SD3's T5, or a file of
another architecture, whose keys all miss) is refused at planning instead: a LoRA that changes
nothing, or only part of what it was trained to, must not pass for applied.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gigacanvas.actors import models
from gigacanvas.actors.localfile import local_weights_file
from gigacanvas.actors.models import Family
from gigacanvas.errors import UsageError

MARKERS = (".lora_A.", ".lora_B.", ".lora_magnitude_vector")  # peft's names for a layer's adapter tensors


@dataclass(frozen=True)
class LoraFile:
    """A checked LoRA: the local file, its weight and its content fingerprint (what actors verify)."""

    path: str
    weight: float
    fingerprint: str


def pipeline_class(family: Family) -> Any:
    """The diffusers pipeline class whose LoRA loader serves `family` (its first pipeline)."""
    import diffusers

    return getattr(diffusers, family.pipelines[0])


def check_loras(refs, info) -> tuple[LoraFile, ...]:
    """Check each `LoraRef` against the model `info` describes, from the file alone: a local
    regular safetensors file whose every key diffusers' loader would put on a layer of this model,
    shapes included. Returns them fingerprinted; refuses in one line otherwise."""
    if not refs:
        return ()
    family = models.family(info.family)
    if not family.pipelines:
        raise UsageError(f"model {info.path} is a stand-in with no weights; it takes no --lora")
    if info.weights_precision == "gguf":  # a LoRA is fused into weights before they are quantised
        raise UsageError(
            f"--lora cannot be fused into a GGUF transformer ({info.transformer_file}): its weights are quantised "
            "already; use the model's folder or .safetensors form with --lora"
        )
    checked, metas = [], {}
    for ref in refs:
        path = _local_file(ref.path)
        state = read_lora(path, family, denoiser_config(info, family))[0]
        groups = _by_component(state, family, ref.path)
        for component, keys in groups.items():
            if component not in metas:
                metas[component] = _meta_module(info, family, component)
            _check_fits(keys, metas[component], component, family, ref.path)
        checked.append(LoraFile(str(path), ref.weight, file_fingerprint(path)))
    return tuple(checked)


def file_fingerprint(path: Path) -> str:
    """16 hex digits of the file's SHA-256 (cached by stat, as the model's: actors/fingerprint.py)."""
    from gigacanvas.actors.fingerprint import cached_file_hash

    return cached_file_hash(path)[:16]


def _local_file(given: str) -> Path:
    """The LoRA as a local regular safetensors file, or one line on why not."""
    path = local_weights_file(given, "lora", "LoRAs", "a .safetensors LoRA file", "use a .safetensors LoRA")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError: one clear line either way
        detail = (str(exc).splitlines() or [exc.__class__.__name__])[0][:100]
        raise UsageError(f"lora {given} is not a readable safetensors file ({detail}); LoRAs must be .safetensors") from None
    return path.resolve()


def read_lora(path: Path | str, family: Family, denoiser_config: Any = None) -> tuple[dict, dict | None, dict | None]:
    """(state dict, network alphas, adapter metadata) as the family's pipeline class reads the file:
    its own `lora_state_dict`, safetensors only (never a pickle fallback). `denoiser_config` (a
    UNet's) lets SDXL's reader map kohya's SGM block numbers as `load_lora_weights` does."""
    cls = pipeline_class(family)
    kwargs: dict[str, Any] = {"use_safetensors": True, "return_lora_metadata": True}
    if "return_alphas" in inspect.signature(cls.lora_state_dict).parameters:
        kwargs["return_alphas"] = True  # Flux's reader hides the alphas unless asked
    if "unet" in cls._lora_loadable_modules and denoiser_config is not None:
        kwargs["unet_config"] = denoiser_config
    try:
        out = cls.lora_state_dict(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - ValueError, KeyError, ...: diffusers' reader refuses the file
        detail = (str(exc).splitlines() or [exc.__class__.__name__])[0][:120]
        raise UsageError(f"lora {path} cannot be read by diffusers' {cls.__name__} LoRA loader ({detail})") from None
    state, alphas, metadata = out if len(out) == 3 else (out[0], None, out[1])
    return state, alphas or None, metadata


def _components(family: Family) -> tuple[str, ...]:
    """What the family's loader puts LoRA layers into: the denoiser and text encoders it names."""
    return tuple(pipeline_class(family)._lora_loadable_modules)


def _by_component(state: dict, family: Family, given: str) -> dict[str, dict]:
    """The LoRA's tensors by the component they change; keys for none of them refused."""
    components = _components(family)
    groups: dict[str, dict] = {}
    for key, tensor in state.items():
        component = next((c for c in components if key.startswith(c + ".")), None)
        if component is None or "lora" not in key:
            raise UsageError(
                f"lora {given} does not fit this {family.label} model: its key {key[:80]!r} is for none of the parts "
                f"diffusers' {family.label} LoRA loader applies ({', '.join(components)}); is it a LoRA for another model?"
            )
        groups.setdefault(component, {})[key[len(component) + 1 :]] = tensor
    if not groups:
        raise UsageError(f"lora {given} holds no LoRA weights")
    return groups


def _peft_keys(keys: dict, component: str, family: Family, module: Any) -> dict:
    """`keys` (one component's, prefix removed) in peft's names, converted as diffusers' loaders
    convert them before injecting (peft.py's `load_lora_adapter`, lora_base's text-encoder loader)."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    if component == family.denoiser:
        return keys if "lora_A" in next(iter(keys)) else convert_unet_state_dict_to_peft(keys)
    keys = convert_state_dict_to_peft(convert_state_dict_to_diffusers(keys))
    if not hasattr(module, "text_model"):
        keys = {k.removeprefix("text_model."): v for k, v in keys.items()}
    return keys


def _check_fits(keys: dict, module: Any, component: str, family: Family, given: str) -> None:
    """Every tensor names a layer of `module` (on the meta device) whose in/out sizes it matches."""
    layers = dict(module.named_modules())
    for key, tensor in _peft_keys(keys, component, family, module).items():
        marker = next((m for m in MARKERS if m in key), None)
        name = key.split(marker)[0] if marker else None
        layer = layers.get(name) if name else None
        weight = getattr(layer, "weight", None)
        why = None
        if marker is None:
            why = "is no LoRA tensor diffusers' loader knows"
        elif weight is None:
            why = f"names no layer of the {component}"
        elif marker == ".lora_A." and key.endswith(".weight") and tensor.shape[1:2] != weight.shape[1:2]:
            why = f"reads {tensor.shape[1]} inputs where the {component}'s layer has {weight.shape[1]}"
        elif marker == ".lora_B." and key.endswith(".weight") and tensor.shape[:1] != weight.shape[:1]:
            why = f"writes {tensor.shape[0]} outputs where the {component}'s layer has {weight.shape[0]}"
        if why:
            raise UsageError(
                f"lora {given} does not fit this {family.label} model: {component}.{key[:80]} {why}; "
                "is it a LoRA for another model or size?"
            )


def denoiser_config(info, family: Family) -> Any:
    """The denoiser's config as diffusers builds it (a FrozenDict: SDXL's reader reads attributes)."""
    from diffusers.configuration_utils import FrozenDict

    from gigacanvas.actors.checkpoint import transformer_source

    return FrozenDict(transformer_source(Path(info.path), info.transformer_file, family)[1])


def _meta_module(info, family: Family, component: str) -> Any:
    """`component` of the model built on the meta device from its config: names and shapes, no weights."""
    from accelerate import init_empty_weights

    from gigacanvas.actors.configs import read_json

    root = Path(info.path)
    with init_empty_weights(include_buffers=False):
        if component == family.denoiser:
            import diffusers

            return getattr(diffusers, family.transformer_class).from_config(denoiser_config(info, family))
        import transformers

        _library, name = read_json(root / "model_index.json", "index")[component][:2]
        config = transformers.AutoConfig.from_pretrained(str(root / component))
        return getattr(transformers, name)._from_config(config)


def _adapter_name(index: int) -> str:
    return f"gigacanvas_lora_{index}"


def _verify(lora, what: str) -> None:
    """The file at the path is still the one planned (this node's copy, or a file replaced since)."""
    path, _weight, fingerprint = lora
    if file_fingerprint(Path(path)) != fingerprint:
        raise UsageError(
            f"lora {path} on {what} is not the file the render was planned with (its bytes differ); "
            "put the same file at the same path on every node"
        )


def fuse_into_denoiser(model: Any, family: Family, loras) -> None:
    """Fuse each (path, weight, fingerprint) of `loras` into `model`, the family's denoiser, with
    diffusers' loader for the pipeline, then drop the adapter layers (see the module docstring)."""
    cls = pipeline_class(family)
    for index, lora in enumerate(loras):
        _verify(lora, os.uname().nodename)
        state, alphas, metadata = read_lora(lora[0], family, model.config)
        if not any(k.startswith(family.denoiser + ".") for k in state):
            continue  # a text-encoder-only LoRA
        name = _adapter_name(index)
        # diffusers names it for the component: load_lora_into_transformer, load_lora_into_unet
        load, kwargs = getattr(cls, f"load_lora_into_{family.denoiser}"), {family.denoiser: model}
        if "network_alphas" in inspect.signature(load).parameters:
            kwargs["network_alphas"] = alphas
        load(state, adapter_name=name, metadata=metadata, **kwargs)
        model.fuse_lora(lora_scale=lora[1], adapter_names=[name])
        model.unload_lora()


def fuse_into_text_encoders(pipe: Any, family: Family, loras, denoiser_config: Any = None) -> None:
    """Fuse the text-encoder parts of `loras` into `pipe`'s text encoders, as `load_lora_weights`
    would load them, then drop the adapter layers."""
    from diffusers.loaders.lora_base import _remove_text_encoder_monkey_patch, fuse_text_encoder_lora

    cls = pipeline_class(family)
    for index, lora in enumerate(loras):
        _verify(lora, os.uname().nodename)
        state, alphas, metadata = read_lora(lora[0], family, denoiser_config)
        for component in _components(family):
            encoder = getattr(pipe, component, None)
            if component == family.denoiser or encoder is None or not any(k.startswith(component + ".") for k in state):
                continue
            name = _adapter_name(index)
            cls.load_lora_into_text_encoder(
                state, network_alphas=alphas, text_encoder=encoder, prefix=component, lora_scale=1.0,
                adapter_name=name, metadata=metadata,
            )
            fuse_text_encoder_lora(encoder, lora_scale=lora[1], adapter_names=[name])
            _remove_text_encoder_monkey_patch(encoder)
