"""`gigacanvas status --store URL`: where a render stands, read from its store alone.

Works from any machine that can read the store, mid-render included: it takes no lease and
writes nothing. The pace comes from the band records' commit times (storage/store.py), so a
render that just resumed shows the pace of its latest step; the time left assumes that pace.
Tiles within a step are not recorded in the store, so progress is reported per band.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from gigacanvas.cluster.progress import duration
from gigacanvas.cluster.resume import refuse_unresumable
from gigacanvas.cluster.signals import resume_command
from gigacanvas.errors import RenderError, UsageError
from gigacanvas.storage.lease import StoreLease
from gigacanvas.storage.store import LatentStore


def _pace(records: list[dict[str, Any]]) -> float | None:
    """Seconds per step: the median over bands of their latest step's commit interval."""
    gaps = []
    for record in records:
        prev = record.get("prev") or {}
        at, before = record.get("at"), prev.get("at")
        if isinstance(at, (int, float)) and isinstance(before, (int, float)) and at > before:
            gaps.append(at - before)
    return statistics.median(gaps) if gaps else None


def store_status(url: str) -> str:
    """A few lines: the render, its progress, whether it runs now, and where its picture goes."""
    store = LatentStore(url)
    refuse_unresumable(url, store)  # no store, not ours, older or newer: its one line
    attrs = store.attrs()
    spec, local = attrs.get("spec"), attrs.get("local")
    spec, local = (spec if isinstance(spec, dict) else {}), (local if isinstance(local, dict) else {})
    steps = spec.get("steps")
    lines = [f"store: {url}"]
    prompt = str(spec.get("prompt", ""))
    lines.append(
        f"render: {spec.get('width')}x{spec.get('height')} px, {steps} steps, seed {spec.get('seed')}, "
        f"prompt {prompt[:60]!r}{'...' if len(prompt) > 60 else ''}"
    )
    lines.append(f"model: {local.get('model') or 'the built-in tiny model'}, {attrs.get('precision', '?')}")
    holder = StoreLease(store.location).holder()
    if store.decoded:
        lines.append(f"progress: finished, all {steps} steps and the picture decoded")
    else:
        bands = range(len(store.bands))
        try:
            records = [store.band_record(b) for b in bands]
        except RenderError:  # no records yet: created, its noise not written (a damaged one: UsageError)
            records = []
        if not records:
            lines.append("progress: created; no step committed yet")
        else:
            done = min(int(r["step"]) for r in records)
            if isinstance(steps, int) and done > steps:
                raise UsageError(f"store {url} records step {done} of a {steps}-step render; it was edited or damaged")
            ahead = max(int(r["step"]) for r in records)
            at = f" (bands at steps {done}-{ahead})" if ahead > done else ""
            pace = _pace(records)
            text = f"progress: step {done} of {steps}{at}"
            if pace is not None and isinstance(steps, int):
                latest = max((r.get("at") or 0) for r in records)
                text += f", {pace:.2f} s/step"
                if holder:
                    text += f", about {duration(pace * (steps - done))} left"
                text += f", last commit {duration(max(0.0, time.time() - latest))} ago"
            lines.append(text)
    if holder:
        lines.append(f"running: yes, {holder}")
    elif not store.decoded and "out" in local and local["out"] is None:  # a composed render's earlier stage
        lines.append("running: no; an earlier stage of a composed render: resume the render's own store (the folder that holds stages/)")
    elif not store.decoded:
        lines.append(f"running: no; resume with: {resume_command(url)}")
    else:
        lines.append("running: no")
    out, cwd = local.get("out"), local.get("cwd")
    if isinstance(out, str) and isinstance(cwd, str) and "://" not in out and not os.path.isabs(os.path.expanduser(out)):
        out = os.path.join(cwd, out)  # relative to the folder the render ran in, not this one
    if out is None and "out" in local:
        out = "(none: an earlier stage of a composed render; its picture stays in the store)"
    lines.append(f"output: {out or '(not recorded: a store of an older gigacanvas)'}")
    return "\n".join(lines)
