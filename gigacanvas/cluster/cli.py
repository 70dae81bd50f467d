"""The `gigacanvas` command: a thin shell over `gigacanvas.render` and the tiny-model builder.

Every failure ends in one line on stderr: `gigacanvas: error: <message>`, exit code 2 for usage
errors (argparse's included) and 1 for runtime failures. Once a render's store exists, that line
ends with the command that finishes it (`; resume with: gigacanvas resume --store URL`). Set
GIGACANVAS_DEBUG=1 to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Sequence

from gigacanvas.errors import GigacanvasError, UsageError


def on_off(text: str) -> bool:
    """`on` or `off` (also yes/no, true/false), for a flag that turns a behaviour on or off."""
    value = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is neither on nor off")
    return value


RENDER_FLAGS = (
    # flag, type, help
    ("--prompt", str, "what to draw"),
    ("--negative-prompt", str, "what to avoid (default: empty; Flux.1 takes none: it is guidance-distilled)"),
    ("--width", int, "picture width in pixels, a multiple of 16 (default 1024)"),
    ("--height", int, "picture height in pixels, a multiple of 16 (default 1024)"),
    ("--steps", int, "denoising steps (default: the model's; 28, Flux.1 [schnell] 4, SDXL 50)"),
    ("--guidance", float, "classifier-free guidance scale, 1 turns it off; Flux.1 [dev]'s distilled guidance input ([schnell] has none) (default: the model's; 7.0, Flux.1 [dev] 3.5, SDXL 5.0)"),
    ("--seed", int, "noise seed (default 0)"),
    ("--model", str, "SD3/SD3.5, Flux.1 or SDXL diffusers folder, hub id, or transformer .safetensors (default: tiny model)"),
    ("--base-model", str, "with a .safetensors --model: the diffusers folder with its VAE, encoders, configs"),
    ("--scheduler", str, "a diffusers scheduler class, configured from the model's scheduler config, among those its family allows: SDXL EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DDIMScheduler, ...; SD3/Flux.1 FlowMatchEulerDiscreteScheduler (default: the model's own)"),
    ("--precision", str, "auto, fp8, fp8-compute, bf16, fp16 or fp32 (default auto: the device's fastest)"),
    ("--tile-size", int, "tile side in pixels (default: the model's native size, 1024 for SD3.5, Flux.1 and SDXL)"),
    ("--tile-overlap", int, "overlap between tiles in pixels (default: an eighth of the tile)"),
    ("--tile-batch", int, "tiles per model call (default 2)"),
    ("--actors", int, "worker actors (default: one per GPU, or 2 on a CPU-only cluster)"),
    ("--cpus-per-actor", float, "CPUs each actor reserves on a CPU-only cluster (default 0.5)"),
    ("--store", str, "zarr store URL: a path, file://, memory://, s3://, gs:// (default: OUT.zarr)"),
    ("--out", str, "output by suffix: .png (up to 16384 px a side), .tif/.tiff (pyramidal BigTIFF), .ome.zarr (the store as OME-Zarr); a path or a URL such as s3://bucket/poster.png (default gigacanvas.png)"),
    ("--vae-tile-size", int, "VAE decode tile in pixels; 0 decodes in one piece (default: native)"),
    ("--vae-decode", str, "exact (the whole decode's pixels, tiled), fast (estimated GroupNorm statistics, a few passes) or blend (version 1's blended tiles); default exact"),
    ("--shift-windows", on_off, "on: shift the tile grid every step by an offset from the seed and the step, so seams cannot build up; off: the same grid every step (default on)"),
    ("--wrap", str, "x, y or xy: join the canvas's opposite edges along those axes (a torus), so the picture tiles seamlessly as a texture or a 360-degree panorama; none: plain edges (default none)"),
    ("--compose", str, "auto: a canvas larger than the model's native area is first rendered whole at about the native pixel count, then upscaled, encoded and refined at full size; N: N refinement stages, each doubling the side; none: render from noise at full size (default auto)"),
    ("--upscaler", str, "an upscale model .safetensors (ESRGAN, RealESRGAN, SwinIR, ...: what spandrel loads, as in ComfyUI) that upscales each refinement's picture before LANCZOS brings it to the stage's size; needs spandrel (default: LANCZOS alone)"),
    ("--strength", float, "how much a refinement redraws, above 0 and at most 1: the share of the steps it runs, starting from the upscaled composition noised to that level (default 0.6)"),
    ("--region", str, 'X,Y,W,H:prompt (pixels from the top-left corner, repeatable): draw that rectangle with its own prompt, the base --prompt drawing the rest, e.g. --region "0,0,2048,700:a stormy sky" (at most 16)'),
    ("--region-feather", int, "width in pixels of the regions' soft edges, a Gaussian falloff centred on each edge; 0: hard edges (default 64)"),
    ("--address", str, "Ray cluster host:port, ray://host:port, or auto (the one running here); default: RAY_ADDRESS, else a new local cluster"),
    ("--preview", str, "refresh a small PNG of the canvas here while it renders (see gigacanvas preview)"),
    ("--preview-every", int, "steps between two --preview refreshes (default 1)"),
)

LORA_HELP = (
    "a LoRA .safetensors (diffusers or kohya format) fused into the model at WEIGHT (default 1, at most 10 either "
    "way), repeatable; the weight is the text after the last colon only when it is a number"
)

# `upscale` takes render's flags but --compose (it refines the picture given), with its own words for these.
UPSCALE_HELP = {
    "--width": "canvas width in pixels, a multiple of 16, instead of --scale (alone: the height follows the picture's aspect)",
    "--height": "canvas height in pixels, a multiple of 16, instead of --scale (alone: the width follows the picture's aspect)",
    "--strength": "how much the refinement redraws, above 0 and at most 1: the share of the steps it runs, from the upscaled picture noised to that level (default 0.6)",
    "--out": "output by suffix, as for render (default upscaled.png; --alpha keep needs a .png)",
    "--upscaler": "an upscale model .safetensors (ESRGAN, RealESRGAN, SwinIR, ...: what spandrel loads, as in ComfyUI) that upscales the picture's colour before LANCZOS brings it to the canvas size (a kept alpha: LANCZOS alone); needs spandrel (default: LANCZOS alone)",
}
UPSCALE_SKIPS = ("--compose",)

# What `resume` takes over the store's record (resume.RESUME_OVERRIDES): where and how, never pixels.
RESUME_FLAGS = (
    ("--out", str, "write the picture here instead (default: the out the render was given)"),
    ("--actors", int, "worker actors this time; the pixels do not depend on it (default: as recorded)"),
    ("--cpus-per-actor", float, "CPUs each actor reserves this time (default: as recorded)"),
    ("--address", str, "Ray cluster to finish on, as for render (default: the one the render was given)"),
    ("--model", str, "where the same weights are now, if they moved (other weights are refused)"),
    ("--base-model", str, "with a .safetensors model: where its folder is now"),
    ("--upscaler", str, "where the same upscale model is now, if it moved (needed only before the refinement's first latent)"),
    ("--precision", str, "precision to ask for; it must run the mode the store was rendered in"),
    ("--preview", str, "refresh a small PNG of the canvas here while it renders"),
    ("--preview-every", int, "steps between two --preview refreshes (default 1)"),
)


REPEATED = {"--region": "regions"}  # flags given once per item, and the spec field that takes their list


def _repeat(flag: str) -> dict:
    return {"action": "append"} if flag in REPEATED else {}


def _flags(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """Render's flags from `args` by spec field name (a repeated flag's list under its field's)."""
    return {
        REPEATED.get(flag, flag.lstrip("-").replace("-", "_")): getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, _, _ in RENDER_FLAGS if flag not in skip
    }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + exits 2; we keep one line
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gigacanvas", description="Render very large pictures with tiled diffusion on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    render = sub.add_parser("render", help="render a picture")
    render.add_argument("--spec", help="YAML, JSON or gigacanvas PNG whose keys are these flags; flags override it")
    for flag, kind, text in RENDER_FLAGS:
        render.add_argument(flag, type=kind, default=None, help=text, **_repeat(flag))
    render.add_argument("--lora", action="append", default=None, metavar="FILE[:WEIGHT]", help=LORA_HELP)
    render.add_argument("--overwrite", action="store_true", default=None, help="replace a store or picture of another render")
    render.add_argument(
        "--strict-precision", action="store_true", default=None, help="fail instead of falling back to another precision"
    )
    render.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    render.add_argument(
        "--dry-run", action="store_true", help="check what can be checked without Ray (not the precision a store was rendered in, nor the cluster's room), print the plan and exit without writing (but a URL model's cache) or starting Ray"
    )
    upscale = sub.add_parser(
        "upscale",
        help="refine a picture (PNG, JPEG, TIFF, WebP) at a larger size with the tiled step loop",
        description="Upscale IMAGE in pixel space, encode it, noise it to --strength and refine it with the tiled "
        "step loop, as a composed render's last stage. The output carries its spec (the picture's sha256 among it) "
        "and resumes like a render's.",
    )
    upscale.add_argument("image", help="the picture to upscale: PNG, JPEG, TIFF or WebP, 8 bits per channel, at most 16384x16384 px")
    upscale.add_argument("--scale", type=float, default=None, help="multiply the picture's sides by this, each rounded to the nearest multiple of 16 (e.g. 2 or 4)")
    upscale.add_argument("--alpha", default=None, help="keep: the output keeps the picture's transparency, upscaled alike (an RGBA PNG); drop: an opaque picture; default keep (a picture without transparency ignores it)")
    upscale.add_argument("--spec", help="YAML, JSON or gigacanvas PNG whose keys are render's flags (an upscale's picture of IMAGE repeats it); flags override it")
    for flag, kind, text in RENDER_FLAGS:
        if flag not in UPSCALE_SKIPS:
            upscale.add_argument(flag, type=kind, default=None, help=UPSCALE_HELP.get(flag, text), **_repeat(flag))
    upscale.add_argument("--lora", action="append", default=None, metavar="FILE[:WEIGHT]", help=LORA_HELP)
    upscale.add_argument("--overwrite", action="store_true", default=None, help="replace a store or picture of another render")
    upscale.add_argument("--strict-precision", action="store_true", default=None, help="fail instead of falling back to another precision")
    upscale.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    upscale.add_argument("--dry-run", action="store_true", help="check the picture and the plan without Ray, print the plan and exit without writing")
    resume = sub.add_parser(
        "resume",
        help="finish a stopped render from its store alone (model, output and all)",
        description="Finish the render that a store holds, from the spec, model and output path it records. "
        "A finished store writes its picture again. Flags may change where and how it runs, never its pixels.",
    )
    resume.add_argument("--store", required=True, help="the render's zarr store URL (OUT.zarr by default)")
    for flag, kind, text in RESUME_FLAGS:
        resume.add_argument(flag, type=kind, default=None, help=text)
    resume.add_argument(
        "--lora", action="append", default=None, metavar="FILE[:WEIGHT]",
        help="where the same LoRA files are now, each with its recorded weight, if they moved (others are refused)",
    )
    resumed = {flag for flag, _, _ in RESUME_FLAGS} | {"--store"}
    for flag, kind, _ in RENDER_FLAGS:  # accepted only to be refused with a reason (resume.refuse_flag)
        if flag not in resumed:
            resume.add_argument(flag, type=kind, default=None, help=argparse.SUPPRESS, **_repeat(flag))
    for flag in ("--spec", "--overwrite", "--strict-precision"):
        resume.add_argument(flag, default=None, help=argparse.SUPPRESS, **({} if flag == "--spec" else {"action": "store_true"}))
    resume.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    resume.add_argument("--dry-run", action="store_true", help="check what can be checked without Ray, print the plan and exit without writing (but a URL model's cache)")
    status = sub.add_parser(
        "status",
        help="where a render stands: step, pace, time left, output; read from its store alone",
        description="Where the render a store holds stands: its spec, the committed step, the pace and time left, "
        "who runs it (or the command that resumes it) and where its picture goes. Reads the store only: works "
        "from any machine that can read it, mid-render included.",
    )
    status.add_argument("--store", required=True, help="the render's zarr store URL (OUT.zarr by default)")
    preview = sub.add_parser(
        "preview",
        help="a small PNG of a render at any moment, mid-render included; read from its store alone",
        description="A small picture of the canvas a store holds: the finished picture, or mid-render a cheap "
        "latent-to-RGB projection of the latest step every band has committed. Reads the store only (no lease).",
    )
    preview.add_argument("--store", required=True, help="the render's zarr store URL")
    preview.add_argument("--out", required=True, help="the preview PNG (replaced only if it is an earlier preview)")
    preview.add_argument("--size", type=int, default=None, help="longer side at most this many px (default 512)")
    demo = sub.add_parser("demo-model", help="build a tiny random-weight model folder (SD3.5 layout, or --family's)")
    demo.add_argument("path", help="folder to create")
    from gigacanvas.actors import models  # light: the families' descriptions, no torch

    tiny = [f.name for f in models.families() if f.tiny_pipeline]
    demo.add_argument("--family", default=None, help=f"the layout: {', '.join(tiny)} (default {models.DEFAULT})")
    convert = sub.add_parser("convert", help="write a model's transformer as one safetensors file (FP8 with scales)")
    convert.add_argument("src", help="SD3/SD3.5, Flux.1 or SDXL diffusers folder, hub id, or transformer .safetensors")
    convert.add_argument("dst", help="output .safetensors file")
    convert.add_argument("--precision", default="fp8", help="fp8 (float8_e4m3fn + per-tensor scales), bf16, fp16, fp32")
    convert.add_argument("--scale-name", default="weight_scale", help="scale key spelling: weight_scale or scale_weight")
    convert.add_argument("--base-model", help="with a .safetensors SRC: the folder that supplies its config")
    bench = sub.add_parser("bench", help="time the step loop on this cluster with a simulated model that sleeps per tile")
    bench.add_argument("--width", type=int, required=True, help="canvas width in pixels, a multiple of 16")
    bench.add_argument("--height", type=int, required=True, help="canvas height in pixels, a multiple of 16")
    bench.add_argument("--tile-seconds", type=float, required=True, help="seconds the simulated model sleeps per tile")
    bench.add_argument("--actors", required=True, help="actor counts to measure, comma-separated, e.g. 1,2,8")
    bench.add_argument("--steps", type=int, default=28, help="denoising steps (default 28)")
    bench.add_argument("--slow-actor", type=float, help="make one actor this many times slower, e.g. 2")
    bench.add_argument("--tile-batch", type=int, default=2, help="tiles per model call (default 2, as render)")
    bench.add_argument("--address", help="Ray cluster to join (as render); default: RAY_ADDRESS, else a new local one per run")
    return parser


def _plan_or_render(spec, args: argparse.Namespace) -> int:
    """What `render` and `resume` end with: the plan for --dry-run, else the render and its summary."""
    from gigacanvas.cluster.plan import plan
    from gigacanvas.cluster.render import render

    if args.dry_run:
        print(plan(spec).describe())
        return 0
    result = render(spec, progress=not args.no_progress)
    print(result.summary())
    return 0


def _loras(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The `--lora` entries, in order; None when none was given (a spec file's `lora:` then applies)."""
    return tuple(args.lora) if args.lora else None


def _render(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.spec import build_spec

    flags = _flags(args)
    spec = build_spec(args.spec, overwrite=args.overwrite, strict_precision=args.strict_precision, lora=_loras(args), **flags)
    return _plan_or_render(spec, args)


def _upscale(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.upscale import upscale_spec

    flags = _flags(args, UPSCALE_SKIPS)
    spec = upscale_spec(
        args.image, args.scale, args.alpha, args.spec, overwrite=args.overwrite, strict_precision=args.strict_precision,
        lora=_loras(args), **flags
    )
    return _plan_or_render(spec, args)


def _resume(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.resume import RESUME_OVERRIDES, refuse_flag, resume_spec

    names = [flag.lstrip("-").replace("-", "_") for flag, _, _ in RENDER_FLAGS]
    for name in (*names, "spec", "overwrite", "strict_precision"):  # set only to be refused, with the reason
        if name not in (*RESUME_OVERRIDES, "store") and getattr(args, name) is not None:
            raise refuse_flag(args.store, name)
    spec = resume_spec(args.store, **{name: getattr(args, name) for name in RESUME_OVERRIDES})
    return _plan_or_render(spec, args)


def _status(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.status import store_status

    print(store_status(args.store))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.preview import preview_command

    print(preview_command(args.store, args.out, args.size))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from gigacanvas.cluster.bench import BenchOptions, parse_actors, run_bench

    options = BenchOptions(
        width=args.width, height=args.height, tile_seconds=args.tile_seconds, actors=parse_actors(args.actors),
        steps=args.steps, slow_actor=args.slow_actor, tile_batch=args.tile_batch, address=args.address,
    )
    run_bench(options, emit=lambda line: print(line, flush=True))
    return 0


def _demo_model(args: argparse.Namespace) -> int:
    from gigacanvas.actors import models
    from gigacanvas.actors.loading import quiet_libraries
    from gigacanvas.actors.models.tiny import build_tiny_model
    from gigacanvas.storage.atomic import check_writable_folder

    quiet_libraries()
    family = models.family(args.family or models.DEFAULT)
    if not family.tiny_pipeline:
        builds = ", ".join(f.name for f in models.families() if f.tiny_pipeline)
        raise UsageError(f"demo-model --family {family.name} has no tiny model; choose one of {builds}")
    path = check_writable_folder(args.path, "demo-model")  # a file in the way, no write access
    if path.is_dir() and any(path.iterdir()):
        raise UsageError(f"demo-model {path} exists and is not empty; choose a new folder")
    build_tiny_model(path, name=family.name)  # all or nothing; a full disk is an OSError naming `path`
    print(f"gigacanvas: tiny {family.label}-layout model written to {path} (random weights: pictures are noise)")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from gigacanvas.actors.convert import convert_transformer

    out = convert_transformer(args.src, args.dst, args.precision, args.scale_name, args.base_model)
    print(f"gigacanvas: wrote {out} ({args.precision}, {out.stat().st_size / 2**20:.1f} MiB)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import errno

    from gigacanvas.cluster import signals

    try:
        with signals.guard():  # a first Ctrl-C or SIGTERM raises in here, and only in here
            args = build_parser().parse_args(argv)
            return {"render": _render, "upscale": _upscale, "resume": _resume, "status": _status, "preview": _preview, "demo-model": _demo_model, "convert": _convert, "bench": _bench}[args.command](args)
    except GigacanvasError as exc:
        print(f"gigacanvas: error: {exc}{signals.resume_hint()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        code, line = signals.ending(exc)
        print(line, file=sys.stderr)
        return code
    except Exception as exc:  # noqa: BLE001 - a traceback reaching the user is a bug; keep it one line
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            # A full, read-only or forbidden disk is the user's to fix: name the path, no traceback.
            doing = "accessing" if exc.errno == errno.EACCES else "writing"
            where = f"{doing} {exc.filename}" if exc.filename else f"while {doing} a file (check --store and --out)"
            print(f"gigacanvas: error: {os.strerror(exc.errno).lower()} {where}{signals.resume_hint()}", file=sys.stderr)
            return 2
        if os.environ.get("GIGACANVAS_DEBUG"):
            traceback.print_exc()
        print(
            f"gigacanvas: internal error: {exc.__class__.__name__}: {exc} (GIGACANVAS_DEBUG=1 shows more){signals.resume_hint()}",
            file=sys.stderr,
        )
        return 1


def entry() -> None:
    """The console script: owns this process's SIGINT/SIGTERM, so Ray's shutdown at exit cannot print a traceback."""
    from gigacanvas.cluster import signals

    signals.install()
    code = main()
    signals.settle(code)
    sys.exit(code)
