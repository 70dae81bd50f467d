"""`gigacanvas resume --store URL`: the spec of the render a store holds, from the URL alone.

A store records the pixel-deciding fields (`spec`), the model's fingerprint and, since the
`local` attribute exists, where the model and the picture are and how the work was spread
(`RenderSpec.resume_record`). `resume_spec` rebuilds the render's spec from those, so that a
killed job, driver or node is finished by one command; the render itself (`render`) then claims,
leases and checks the store as for any other run, and resumes it.

Overrides change where and how the render runs, never its pixels: `RESUME_OVERRIDES`. A model
may be given again only as the same weights at a new place (the fingerprint must match).
Everything refused here is one `UsageError` line, before anything is written.
"""

from __future__ import annotations

import os
from typing import Any

from gigacanvas.cluster.spec import (
    CONTENT_FIELDS,
    OMITTABLE_FIELDS,
    RESUME_FIELDS,
    RenderSpec,
    _normalise_keys,
)
from gigacanvas.errors import UsageError
from gigacanvas.storage.store import LAYOUT, LatentStore

# What `resume` takes from flags over the store's record: places and spread, not pixels. A
# precision other than the recorded one is accepted only if it runs the mode the store was
# rendered in (`render` checks it), so the pixels cannot change.
RESUME_OVERRIDES = (
    "out", "actors", "cpus_per_actor", "address", "model", "base_model", "upscaler", "precision", "preview", "preview_every",
    "lora",
)
PATH_FIELDS = ("out", "model", "base_model", "preview", "image", "upscaler")  # may be relative to the folder the render ran in


def refuse_flag(url: str, name: str) -> UsageError:
    """The error for a flag `resume` does not take: one that decides the pixels, or any other."""
    flag = "--" + name.replace("_", "-")
    if name in CONTENT_FIELDS:
        return UsageError(
            f"resume cannot change {flag}: it decides the pixels of the render in store {url}; "
            "for another picture run gigacanvas render with another --store"
        )
    takes = ", ".join("--" + n.replace("_", "-") for n in RESUME_OVERRIDES)
    return UsageError(f"resume does not take {flag}; it finishes the render its store records and takes only {takes}")


def resume_spec(url: str, **overrides: Any) -> RenderSpec:
    """The spec of the render in store `url`, with `overrides` (RESUME_OVERRIDES; None: keep)."""
    for name, value in overrides.items():
        if value is not None and name not in RESUME_OVERRIDES:
            raise refuse_flag(url, name)
    store = LatentStore(url)
    refuse_unresumable(url, store)
    attrs = store.attrs()
    content, local = attrs.get("spec"), attrs.get("local")
    if not isinstance(local, dict) or not isinstance(content, dict):
        raise UsageError(
            f"store {url} was made by an older gigacanvas and records no model or output; "
            "run the original render command again to resume it"
        )
    source = f"store {url}"
    if "out" in local and local["out"] is None and overrides.get("out") is None:  # a composed render's earlier stage
        also = "" if "stage" in content else ", or pass --out to write this stage's picture"
        raise UsageError(
            f"store {url} is an earlier stage of a composed render and records no picture of its own; resume the "
            f"composed render's store (the folder that holds stages/){also}"
        )
    content = _fields(content, CONTENT_FIELDS, source, "spec")
    missing = [name for name in CONTENT_FIELDS if name not in content and name not in OMITTABLE_FIELDS]
    if missing:  # defaults would render another picture, which the claim would refuse less clearly
        raise UsageError(f"{source} records no '{missing[0]}' in its spec; it cannot be resumed")
    recorded = _fields({k: v for k, v in local.items() if k != "cwd"}, RESUME_FIELDS, source, "local fields")
    given = {k: v for k, v in overrides.items() if v is not None}
    data = {**content, **_from_folder(recorded, local.get("cwd"), set(given)), **given, "store": url}
    try:
        spec = RenderSpec(**data)
    except UsageError as exc:
        if given:  # may be a flag's value: say it as for render
            raise
        raise UsageError(f"{source} records a render this gigacanvas cannot run ({exc})") from None
    _check_model(spec, url, attrs.get("fingerprint"))
    if "upscaler" in given and spec.upscaler_fingerprint is None:  # it would be another picture
        raise UsageError(f"store {url} was rendered without an upscale model; resume --upscaler only says where its model is now")
    return spec


def _fields(data: dict[str, Any], allowed: tuple[str, ...], source: str, what: str) -> dict[str, Any]:
    """`data`'s keys as spec fields, each one of `allowed` (a record edited by hand may hold others)."""
    data = _normalise_keys(data, source)  # unknown keys: one line listing the valid ones
    for name in data:
        if name not in allowed:
            raise UsageError(f"{source} records '{name}' in its {what}, where resume does not take it")
    return data


def refuse_unresumable(url: str, store: LatentStore) -> None:
    """One line for every URL that holds no render to resume; a store in use is the lease's to refuse."""
    state = store.inspect()
    if state.kind == "new":
        raise UsageError(f"store {url} does not exist; nothing to resume (pass the --store a render wrote, OUT.zarr by default)")
    if state.kind == "empty":
        raise UsageError(f"store {url} is empty; nothing to resume")
    if state.kind == "old":
        raise UsageError(
            f"store {url} was written by an older gigacanvas (store layout {state.layout}) and cannot be resumed; "
            "run the original render command with --overwrite to start it again"
        )
    if state.kind in ("file", "foreign"):
        shown = ", ".join(state.others[:3]) + (", ..." if len(state.others) > 3 else "")
        holds = "is a file" if state.kind == "file" else f"holds files that are not a gigacanvas store's ({shown})"
        raise UsageError(f"store {url} {holds}; it is not a gigacanvas store, so there is nothing to resume")
    if state.kind == "newer":
        raise UsageError(
            f"store {url} was written by a newer gigacanvas (store layout {state.layout}; this one knows up to "
            f"{LAYOUT}); upgrade gigacanvas to resume it"
        )


def _absolute(value: str) -> bool:
    """A path from the root, or a URL: the same place from any folder."""
    return "://" in value or os.path.isabs(os.path.expanduser(value))


def _from_folder(local: dict[str, Any], cwd: Any, given: set[str] = frozenset()) -> dict[str, Any]:
    """The recorded paths, relative ones made absolute against the folder the render ran in.

    Only when resumed from another folder, so that a resume from the same one gives the very spec
    (and picture text) of the original command. A model that is no path there is a hub id or
    `simulated:...`, kept as given; a folder this machine lacks leaves everything as given.
    """
    relative = [n for n in PATH_FIELDS if isinstance(local.get(n), str) and not _absolute(local[n])]
    if isinstance(cwd, str) and not os.path.isdir(cwd) and "out" in relative and "out" not in given:
        # the picture would land in whatever folder resume runs from: say so instead
        raise UsageError(
            f"store records out {local['out']!r} relative to folder {cwd}, which this machine lacks; pass --out"
        )
    if not isinstance(cwd, str) or not os.path.isdir(cwd) or os.path.samefile(cwd, os.getcwd()):
        return local
    local = dict(local)
    for name in PATH_FIELDS:
        value = local.get(name)
        if not isinstance(value, str) or _absolute(value):
            continue
        there = os.path.join(cwd, value)
        if name in ("out", "preview") or os.path.exists(there):
            local[name] = there
    if isinstance(local.get("lora"), list):  # FILE[:WEIGHT] each: the file part may be relative
        local["lora"] = [_lora_from_folder(entry, cwd) for entry in local["lora"]]
    return local


def _lora_from_folder(entry: Any, cwd: str) -> Any:
    """A recorded `--lora` entry with a relative file made absolute against `cwd`, where it exists
    there (the weight, after the last colon, is kept as it is)."""
    from gigacanvas.cluster.lora import parse_lora

    if not isinstance(entry, str):
        return entry  # RenderSpec refuses it in one line
    try:
        path = parse_lora(entry).path
    except UsageError:
        return entry
    return os.path.join(cwd, entry) if not _absolute(path) and os.path.exists(os.path.join(cwd, path)) else entry


def _check_model(spec: RenderSpec, url: str, fingerprint: Any) -> None:
    """The model must still be the one the store was rendered with (its bytes, not its name)."""
    from gigacanvas.actors.loading import open_model

    info = open_model(spec.model, spec.base_model, spec.scheduler)  # a missing model is its one line
    if info.fingerprint != fingerprint:
        model = spec.model or "the built-in tiny model"
        raise UsageError(
            f"model {model} is not the one store {url} was rendered with (its weights or configs differ); "
            "pass --model with the original weights"
        )
