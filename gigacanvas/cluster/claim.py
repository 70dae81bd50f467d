"""Claiming a store for one render: what `--store` and `--overwrite` may do, and nothing more.

The promise to users: gigacanvas writes its store to a new path, an empty folder, or a gigacanvas
store; it deletes only a gigacanvas store's own keys, and only when that store belongs to another
render and `--overwrite` is given (a store of this very render is resumed, never discarded, with
or without `--overwrite`). Anything else at the URL (a file, a folder with other files, someone
else's zarr group, a store of a newer gigacanvas) is refused before a byte is written.

Taking the lease is the first write, and so also the probe that the store can be created and
written at all; a render refused after it gives the lease back and removes the folder it made.
"""

from __future__ import annotations

from dataclasses import dataclass

from gigacanvas.errors import GigacanvasError, UsageError
from gigacanvas.storage.lease import StoreLease
from gigacanvas.storage.store import LAYOUT, LatentStore, StoreState


@dataclass
class Claim:
    """A store this process holds the lease on, and what to do with it."""

    store: LatentStore
    resumable: bool  # holds committed steps of this very render
    replace: StoreState | None  # a gigacanvas store to clear before creating ours; None: nothing to clear
    made_root: bool  # this claim created the store's folder (removed again if the render is refused)

    def release(self) -> None:
        """Give the lease back, and remove the folder the claim made if nothing was written to it."""
        if self.store.lease is not None:
            self.store.lease.release()
            self.store.lease = None
        if self.made_root:
            self.store.location.remove_root_if_empty()


def _refuse_unusable(url: str, state: StoreState, overwrite: bool) -> None:
    if state.kind == "file":
        raise UsageError(f"store {url} is a file; pass a new path, an empty folder or a gigacanvas store as --store")
    if state.kind == "foreign":
        shown = ", ".join(state.others[:3]) + (", ..." if len(state.others) > 3 else "")
        raise UsageError(
            f"store {url} exists and holds files that are not a gigacanvas store ({shown}); gigacanvas never "
            "deletes them: pass a new path or an empty folder as --store"
        )
    if state.kind == "newer":
        raise UsageError(
            f"store {url} was written by a newer gigacanvas (store layout {state.layout}; this one knows up to "
            f"{LAYOUT}); upgrade gigacanvas to resume it, or pass another --store"
        )
    if state.kind == "old" and not overwrite:
        raise UsageError(
            f"store {url} was written by an older gigacanvas (store layout {state.layout}) and cannot be resumed; "
            "pass --overwrite to replace it, or another --store"
        )


def _differences(store: LatentStore, content: dict, fingerprint: str) -> list[str]:
    attrs = store.attrs()
    theirs = attrs.get("spec") if isinstance(attrs.get("spec"), dict) else {}
    diff = sorted(k for k in set(content) | set(theirs) if content.get(k) != theirs.get(k))
    if attrs.get("fingerprint") != fingerprint:
        diff.append("model")
    return diff


def _other_render(url: str, diff: list[str]) -> UsageError:
    return UsageError(
        f"store {url} holds a render of another spec (differs in {', '.join(diff)}); "
        "pass --overwrite to replace it or --store for a new one"
    )


def _judge(store: LatentStore, state: StoreState, content: dict, fingerprint: str, overwrite: bool) -> tuple[bool, StoreState | None]:
    """(resumable, what to clear) for a usable `state`; a store of another render needs --overwrite."""
    if state.kind == "ours":
        diff = _differences(store, content, fingerprint)
        if not diff:
            steps = content.get("steps")
            if isinstance(steps, int) and store.committed_step() > steps:  # a dry run refuses it too
                raise UsageError(
                    f"store {store.url} records step {store.committed_step()} of a {steps}-step render; "
                    "it was edited or damaged"
                )
            return True, None
        if not overwrite:
            raise _other_render(store.url, diff)
        return False, state
    if state.kind in ("ours-unfinished", "old"):
        return False, state
    return False, None


def claim_store(url: str, content: dict, fingerprint: str, overwrite: bool) -> Claim:
    """Inspect, lease and judge the store at `url` for a render of `content` with this model."""
    store = LatentStore(url)
    state = store.inspect()
    _refuse_unusable(url, state, overwrite)
    made_root = store.location.make_root() if state.kind == "new" else False
    lease = StoreLease(store.location)
    try:
        lease.acquire()
    except Exception as exc:  # noqa: BLE001 - the first write is the writability probe
        if made_root:
            store.location.remove_root_if_empty()
        if isinstance(exc, GigacanvasError):
            raise
        raise UsageError(f"store {url} cannot be written ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    store.lease = lease
    claim = Claim(store, resumable=False, replace=None, made_root=made_root)
    try:
        state = store.inspect()  # again, now that no other render can change it
        _refuse_unusable(url, state, overwrite)
        claim.resumable, claim.replace = _judge(store, state, content, fingerprint, overwrite)
    except BaseException:
        claim.release()
        raise
    return claim


def preview_store(url: str, content: dict, fingerprint: str, overwrite: bool) -> str:
    """What `claim_store` would do, read-only (for --dry-run); refuses exactly what it refuses."""
    store = LatentStore(url)
    state = store.inspect()
    _refuse_unusable(url, state, overwrite)
    resumable, replace = _judge(store, state, content, fingerprint, overwrite)
    if resumable:
        return f"resume at step {store.committed_step()}"
    if replace is None:
        return "create"
    if replace.kind == "ours":
        return "replace a store of another render (--overwrite)"
    return "replace an unfinished or older gigacanvas store"
