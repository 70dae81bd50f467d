"""Reading a spec from a file: YAML, JSON or a gigacanvas picture (PNG, TIFF, OME-Zarr), bounded against careless and hostile input.

`--spec` takes files from anywhere, a downloaded picture included, so nothing read here may block
(a FIFO with no writer), fill memory (/dev/zero, a YAML alias bomb) or choose where output goes
(a picture may set only the keys `RenderSpec.portable` writes into it). Every refusal is one
`UsageError` line; the values themselves are checked by `RenderSpec`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gigacanvas.cluster.spec import LOCAL_FIELDS, PICTURE_ONLY, SPEC_VERSION, _normalise_keys, _quote, not_a_single_value
from gigacanvas.errors import UsageError
from gigacanvas.storage.outputs import output_kind, read_output_spec
from gigacanvas.storage.picture import open_regular

MAX_SPEC_FILE = 1 << 20  # bytes; a spec is a few lines, and the limit bounds what a file makes us hold


class _AliasFound(yaml.YAMLError):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader, refusing anchors and aliases before anything is built.

    An alias bomb (a billion-laughs list) is tiny on disk and shares its items in memory, but any
    walk over it (a check, a message, JSON for the picture) takes time and memory exponential in
    its depth. A spec needs no aliases, so none are accepted and no expansion can ever happen.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AliasFound
        return super().compose_node(parent, index)


def load_spec_file(path: str) -> dict[str, Any]:
    """Keys from a YAML, JSON or gigacanvas PNG file, checked before `RenderSpec` sees their values.

    A YAML or JSON file is the user's own and may set every key, the local ones (store, out,
    overwrite, address) included; a picture may come from anyone and may set only what
    `RenderSpec.portable` writes, so a downloaded picture cannot pick a folder, a file or a cluster.
    """
    is_png = output_kind(path) is not None  # a picture: .png, .tif, .tiff or .ome.zarr
    source = f"picture {path}" if is_png else f"spec file {path}"
    if is_png:
        data = read_output_spec(path)  # refuses what is not a regular file, as below
        if isinstance(data, dict):
            data.pop(PICTURE_ONLY, None)  # what rendered it, not what to render: not a spec key
    else:
        data = _parse(_read(path, source), Path(path).suffix.lower() == ".json", source)
    if data is None:
        raise UsageError(f"{source} is empty; write one key a line, e.g. 'prompt: a fox'")
    if not isinstance(data, dict):
        raise UsageError(f"{source} must hold a mapping of keys to values, not {_quote(data)}")
    _check_version(data, source)
    data = _normalise_keys(data, source)
    if is_png:
        # pictures made before versions existed are version 1; a spec file without the key is
        # written for the gigacanvas reading it, so it gets today's version (RenderSpec's default)
        data.setdefault("spec_version", 1)
    for name, value in data.items():
        if is_png and name in LOCAL_FIELDS:
            raise UsageError(f"{source} sets '{name}', which only your own flags or spec file may set")
        if name == "lora" and isinstance(value, list):
            if all(isinstance(v, str) for v in value):
                continue  # the one list a spec takes: `lora:` with a FILE[:WEIGHT] a line (RenderSpec bounds it)
            raise UsageError(f"{source}: each entry of 'lora' must be a \"FILE[:WEIGHT]\" string, e.g. - style.safetensors:0.8")
        problem = None if name == "regions" else not_a_single_value(value)  # a list: cluster/regions.py checks it
        if problem:
            raise UsageError(f"{source}: key '{name}' {problem}")
    return data


def _read(path: str, source: str) -> bytes:
    """At most MAX_SPEC_FILE bytes of a regular file; a larger one is refused, not truncated."""
    with open_regular(path, source) as file:
        try:
            raw = file.read(MAX_SPEC_FILE + 1)
        except OSError as exc:
            raise UsageError(f"{source} is unreadable ({exc.__class__.__name__})") from exc
    if len(raw) > MAX_SPEC_FILE:
        raise UsageError(f"{source} is larger than {MAX_SPEC_FILE >> 20} MiB; a spec is a few lines of text")
    return raw


def _parse(raw: bytes, is_json: bool, source: str) -> Any:
    """The document in `raw`; bytes, so that each format detects its own encoding (UTF-8, -16, BOMs)."""
    try:
        return json.loads(raw) if is_json else yaml.load(raw, Loader=_NoAliasLoader)  # a SafeLoader
    except _AliasFound:
        raise UsageError(f"{source} uses YAML aliases, which gigacanvas does not accept") from None
    except Exception as exc:  # noqa: BLE001 - json and yaml share no error base; deep nesting is a RecursionError
        first = (str(exc).splitlines() or [exc.__class__.__name__])[0][:100]
        raise UsageError(f"{source} is not valid {'JSON' if is_json else 'YAML'} ({first})") from None


def _check_version(data: dict[Any, Any], source: str) -> None:
    """Refuse a spec from a newer gigacanvas before its unknown keys can give a stranger message.

    Without `spec_version` a picture is version 1, the version before the field existed.
    """
    versions = [v for k, v in data.items() if isinstance(k, str) and k.replace("-", "_") == "spec_version"]
    for value in versions:
        if isinstance(value, int) and not isinstance(value, bool) and value > SPEC_VERSION:
            raise UsageError(
                f"{source} was made by a newer gigacanvas (spec version {_quote(value)}; this one knows up to "
                f"{SPEC_VERSION}); upgrade gigacanvas to render it again"
            )
