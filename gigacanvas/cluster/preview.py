"""`gigacanvas preview --store URL --out small.png`: a small picture of a render at any moment.

Read from the store alone, mid-render included (it takes no lease and writes nothing there):
- a finished store gives its real picture, from its smallest multiscale level that is at least
  `size` px on its longer side (or from `image` if it has no levels yet);
- otherwise the latent at the step every band has committed (store.py's consistent read), projected
  to RGB with a fixed linear map: no VAE, no model, milliseconds a band. That is the noisy latent
  of the step, not the sampler's estimate of the end, so early steps look like coloured noise that
  settles as the render goes on.

Either way the source is read band by band and shrunk as it is read (the mean of f x f blocks), so
a 16K canvas's latent or picture never sits in memory whole. The preview is a PNG written
atomically with a `gigacanvas-preview` text chunk (the store and step it shows), and only such a
file (or nothing) is ever replaced at `--out`: a picture of ours or anyone's file is left alone.

`Previewer` is the render's `--preview PATH --preview-every N`: at every Nth committed step (and
the last) it writes the same preview from a thread of its own, so the step loop never waits on it;
a step that comes while one is being written is folded into the next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from gigacanvas.errors import GigacanvasError, RenderError, UsageError
from gigacanvas.storage.location import first_line
from gigacanvas.storage.store import LatentStore

PREVIEW_CHUNK = "gigacanvas-preview"
DEFAULT_SIZE = 512
MAX_SIZE = 4096
BAND_ROWS = 128  # source rows read at once (rounded up to whole blocks): one latent chunk row

# SD3/SD3.5's 16 latent channels to RGB in [-1, 1], for the latent as the sampler holds it (scaled
# and shifted): ComfyUI's `latent_formats.SD3.latent_rgb_factors` and `latent_rgb_factors_bias`,
# a least-squares fit of decoded pixels on latents (its live previews use the same map).
SD3_RGB = np.array(
    [
        [-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458], [0.0856, 0.0339, 0.0902],
        [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309], [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358],
        [-0.0194, 0.0020, 0.0669], [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
        [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293], [-0.1448, -0.1463, -0.1189],
    ],
    dtype=np.float32,
)
SD3_RGB_BIAS = np.array([0.2394, 0.2135, 0.1925], dtype=np.float32)


def shrink(rows: np.ndarray, factor: int) -> np.ndarray:
    """(n, w, c) to (ceil(n/f), ceil(w/f), c) float32: the mean of each f x f block, edges repeated."""
    if factor == 1:
        return rows.astype(np.float32)
    n, w, _ = rows.shape
    pad = ((0, -n % factor), (0, -w % factor), (0, 0))
    rows = np.pad(rows, pad, mode="edge") if any(p[1] for p in pad) else rows
    n, w, c = rows.shape
    return rows.reshape(n // factor, factor, w // factor, factor, c).mean(axis=(1, 3), dtype=np.float32)


def project(latent: np.ndarray) -> np.ndarray:
    """(n, w, 16) latent to (n, w, 3) uint8 through SD3's latent-to-RGB map."""
    if latent.shape[-1] != len(SD3_RGB):
        raise UsageError(f"no latent-to-RGB map for {latent.shape[-1]}-channel latents (SD3's has 16)")
    rgb = latent @ SD3_RGB + SD3_RGB_BIAS
    return (np.clip((rgb + 1) / 2, 0, 1) * 255).round().astype(np.uint8)


def _blocks(height: int, factor: int, read: Callable[[int, int], np.ndarray]) -> Iterator[np.ndarray]:
    """`read(y0, y1)` over the whole height, in bands of whole f-row blocks, each shrunk at once."""
    rows = -(-max(BAND_ROWS, factor) // factor) * factor
    for y0 in range(0, height, rows):
        yield shrink(read(y0, min(height, y0 + rows)), factor)


def preview_image(store: LatentStore, size: int) -> tuple[np.ndarray, dict]:
    """A (h, w, 3) uint8 preview of at most `size` px a side, and what it shows (its chunk's JSON)."""
    from gigacanvas.storage.multiscale import has_levels, level_shapes

    if store.decoded:
        height, width = store.image_shape
        shapes = level_shapes(height, width)
        if has_levels(store):
            k = max(i for i, shape in enumerate(shapes) if i == 0 or max(shape) >= size)
            h, w = shapes[k]
            array = store.group[str(k)]
            read = lambda y0, y1: np.asarray(array[:, y0:y1]).transpose(1, 2, 0)  # noqa: E731
        else:
            h, w = height, width
            read = store.image_rows
        factor = -(-max(h, w) // size)
        image = np.concatenate(list(_blocks(h, factor, read)))
        return image.round().astype(np.uint8), {"store": store.url, "finished": True}
    try:
        step = store.committed_step()
    except RenderError:
        raise UsageError(f"store {store.url} has no committed step yet; nothing to preview (try again in a moment)") from None
    lat_h = store.bands[-1][1]
    lat_w = store.group["noise"].shape[2]
    factor = -(-max(lat_h, lat_w) // size)
    read = lambda y0, y1: store.read_rows(y0, y1, step)[0].transpose(1, 2, 0)  # noqa: E731
    image = project(np.concatenate(list(_blocks(lat_h, factor, read))))
    # a latent cell is a block of pixels: show it at up to the picture's size, up to `size`
    height, width = store.image_shape
    grow = max(1, min(size // max(image.shape[:2]), max(height, width) // max(image.shape[:2])))
    if grow > 1:
        image = image.repeat(grow, axis=0).repeat(grow, axis=1)
    steps = (store.attrs().get("spec") or {}).get("steps")
    return image, {"store": store.url, "step": step, "steps": steps, "finished": False}


def check_preview_out(out: str, what: str = "out") -> None:
    """`out` must be a .png that gigacanvas could write, holding nothing or an earlier preview."""
    from gigacanvas.storage.atomic import check_writable_file
    from gigacanvas.storage.picture import check_picture_url, local_path, read_png_spec

    if not out.lower().endswith(".png"):
        raise UsageError(f"{what} {out!r} must end in .png (a preview is a PNG)")
    here = local_path(out)
    exists = check_writable_file(here, what).exists() if here is not None else check_picture_url(out)
    if not exists:
        return
    try:
        read_png_spec(out, PREVIEW_CHUNK)
    except UsageError:
        raise UsageError(
            f"{what} {out} exists and is not a gigacanvas preview; gigacanvas never replaces it: pass another path"
        ) from None


def write_preview(url: str, out: str, size: int, store: LatentStore | None = None) -> dict:
    """The preview of the store at `url` written to `out` (atomically); returns what it shows."""
    from gigacanvas.storage.picture import write_png_bands

    store = store or LatentStore(url)
    image, about = preview_image(store, size)
    write_png_bands(out, image.shape[1], image.shape[0], [image], about, None, keyword=PREVIEW_CHUNK)
    return {**about, "width": image.shape[1], "height": image.shape[0]}


def preview_command(url: str, out: str, size: int | None) -> str:
    """`gigacanvas preview`: checks, the preview, and the line that says what was written."""
    from gigacanvas.cluster.resume import refuse_unresumable

    size = DEFAULT_SIZE if size is None else size
    if not 1 <= size <= MAX_SIZE:
        raise UsageError(f"size {size} must be from 1 to {MAX_SIZE} px")
    store = LatentStore(url)
    refuse_unresumable(url, store)  # no store, not ours, older or newer: its one line
    check_preview_out(out)
    about = write_preview(url, out, size, store)
    shows = "the finished picture" if about["finished"] else f"step {about['step']} of {about['steps']} (latent preview)"
    return f"gigacanvas: preview of {shows}, {about['width']}x{about['height']} -> {out}"


class Previewer:
    """The render's `--preview`: a preview every `every` steps, written by a thread of its own."""

    def __init__(self, url: str, out: str, every: int, last: int, notify: Callable[[str], None], size: int = DEFAULT_SIZE):
        self.url, self.out, self.every, self.last, self.notify, self.size = url, out, every, last, notify, size
        self._thread: threading.Thread | None = None
        self._pending = False
        self._lock = threading.Lock()
        self._failed = False

    def step(self, done: int) -> None:
        """Called by the step loop after each committed step; returns at once."""
        if done % self.every and done != self.last:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._pending = True  # written as soon as the one in flight is done
                return
            self._thread = threading.Thread(target=self._run, name="gigacanvas-preview", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                write_preview(self.url, self.out, self.size)
            except Exception as exc:  # noqa: BLE001 - a preview never stops the render; say so once
                if not self._failed:
                    self._failed = True
                    why = str(exc) if isinstance(exc, GigacanvasError) else f"{exc.__class__.__name__}: {first_line(exc)}"
                    self.notify(f"gigacanvas: preview {self.out} not written ({why}); the render goes on")
            with self._lock:
                if not self._pending:
                    return
                self._pending = False

    def close(self) -> None:
        """Wait for the preview in flight (the last step's, at the end of the denoise)."""
        thread = self._thread
        if thread is not None:
            thread.join()

