"""The editing and exploring flags of `imagen-sample`: image-to-image, inpainting and outpainting of a given
image (`--init-image`, with the usual outputs, --grid and --sweep), interpolation (`--interpolate-to`,
`--interpolate-seeds`: frames, a strip and a GIF) and prompt differences (`--text-diff`: one image per scale).
Everything that can be checked before the model loads is checked in `check`, with one-line errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli import PROG, UsageError

DEFAULT_STRENGTH, DEFAULT_FRAMES, DEFAULT_FRAME_MS = 0.6, 8, 150

EPILOG = """\
editing a given image (white mask pixels = regenerate, black = keep; any image mode; masks split at grey 128):
  --upscale IMG                            upscaler: the super-resolution stages alone on IMG (square, any size;
                                           resized to the base resolution, e.g. 64 px), the prompt describing it;
                                           the same as --init-image IMG --strength 0 1 1
  --init-image IMG [--strength S]          variations / image-to-image: IMG noised to level S (0 keeps it,
                                           1 ignores it; default 0.6) then denoised with the prompt; use
                                           --num-images K --grid for K variations. IMG: square, any size (it is
                                           resized to every stage's resolution).
  --init-image IMG --mask M [--resample-steps U]
                                           inpainting: regenerate M's white part (M: IMG's size), keeping the
                                           rest exactly; U > 1 adds RePaint resampling (better blending, U x steps)
  --init-image IMG --outpaint L T R B      outpainting: IMG on a canvas L T R B pixels wider on each side (must
                                           come out square), the new border generated
exploring:
  --interpolate-to PROMPT and/or --interpolate-seeds S1 S2 [--frames N] [--gif]
      N frames from (--prompt, S1) to (PROMPT, S2): slerped noise, interpolated text embeddings; the ends
      are the plain samples. Writes NNN.png frames and interpolation.png (a strip; --out X.png: the strip
      there), and interpolation.gif (X.gif) with --gif.
  --text-diff SOURCE TARGET [--diff-scale F [F ...]]
      the --prompt's text embedding moved by F (TARGET - SOURCE) at one seed, to change one attribute:
      SOURCE and TARGET are whole prompts that differ in it ("a red circle ..." "a green circle ...").
      Writes NNN.png per scale, and text_diff.png (labelled) for several scales."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    edit = parser.add_argument_group("editing a given image (see 'editing' below)")
    edit.add_argument("--upscale", type=Path, metavar="IMG",
                      help="upscaler: run the super-resolution stages alone on IMG, which stands for the base stage's "
                           "output (resized to the base resolution, with a note, when it has another size); the "
                           "prompt describes the image")
    edit.add_argument("--init-image", type=Path, metavar="IMG",
                      help="start from this image: image-to-image variations, or with --mask / --outpaint the image "
                           "to inpaint / extend")
    edit.add_argument("--strength", type=float, nargs="+", metavar="S",
                      help="noise level in [0, 1] the image starts from, per stage: 0 returns it, 1 ignores it "
                           f"(default {DEFAULT_STRENGTH}; 1 with --mask or --outpaint)")
    edit.add_argument("--mask", type=Path, metavar="MASK",
                      help="inpainting mask of the image's size: white = regenerate, black = keep")
    edit.add_argument("--resample-steps", type=int, default=1, metavar="U",
                      help="RePaint resampling for --mask / --outpaint: every step done U times (default 1: off)")
    edit.add_argument("--outpaint", type=int, nargs=4, metavar=("L", "T", "R", "B"),
                      help="extend the image by L, T, R, B pixels (left, top, right, bottom) and generate the border")
    explore = parser.add_argument_group("exploring (see 'exploring' below)")
    explore.add_argument("--interpolate-to", metavar="PROMPT",
                         help="interpolate from --prompt to this prompt (frames, a strip PNG, a GIF with --gif)")
    explore.add_argument("--interpolate-seeds", type=int, nargs=2, metavar=("S1", "S2"),
                         help="interpolate from seed S1 to seed S2 (default: --seed at both ends)")
    explore.add_argument("--frames", type=int, metavar="N",
                         help=f"interpolation frames, the ends included (default {DEFAULT_FRAMES})")
    explore.add_argument("--gif", action="store_true", help="also write the interpolation as an animated GIF")
    explore.add_argument("--frame-duration", type=int, metavar="MS",
                         help=f"GIF frame duration in milliseconds (default {DEFAULT_FRAME_MS})")
    explore.add_argument("--text-diff", nargs=2, metavar=("SOURCE", "TARGET"),
                         help="move the prompt's text embedding along embed(TARGET) - embed(SOURCE)")
    explore.add_argument("--diff-scale", type=float, nargs="+", metavar="F",
                         help="text-diff factor(s), one image each (default 1; 0 = the plain prompt)")


def mode(args: argparse.Namespace) -> str | None:
    """'image' (--init-image or --upscale), 'interpolate', 'text-diff' or None (plain sampling)."""
    if args.upscale is not None and any(getattr(args, a) not in (None, False) for a in
                                        ("init_image", "strength", "mask", "outpaint")):
        raise UsageError("--upscale runs the super-resolution stages on the image as it is: drop --init-image, "
                         "--strength, --mask and --outpaint")
    chosen = [name for name, on in (("image", args.init_image is not None or args.upscale is not None),
                                    ("interpolate", args.interpolate_to is not None or args.interpolate_seeds),
                                    ("text-diff", args.text_diff is not None)) if on]
    if len(chosen) > 1:
        raise UsageError("--init-image/--upscale, --interpolate-to/--interpolate-seeds and --text-diff are separate "
                         "modes: give one")
    return chosen[0] if chosen else None


@dataclass(frozen=True)
class ImageInputs:
    """The checked image (and mask) of an image edit, and how it was asked for (for the PNG settings)."""

    image: Any  # PIL image (the outpainting canvas) or (1, 3, H, W) tensor
    mask: Any
    settings: dict


def check(args: argparse.Namespace, prompts: list[str], sweep: list) -> ImageInputs | None:
    """The editing flags' checks that need no model; reads and checks the image and mask (image mode)."""
    current = mode(args)
    _needs(args, current == "image", ("strength", "--strength"), ("mask", "--mask"), ("outpaint", "--outpaint"),
           what="--init-image")
    if args.resample_steps != 1 and current != "image":
        raise UsageError("--resample-steps needs --init-image with --mask or --outpaint")
    _needs(args, current == "interpolate", ("frames", "--frames"), ("gif", "--gif"),
           ("frame_duration", "--frame-duration"), what="--interpolate-to or --interpolate-seeds")
    _needs(args, current == "text-diff", ("diff_scale", "--diff-scale"), what="--text-diff")
    if current in ("interpolate", "text-diff"):
        flag = "--text-diff" if current == "text-diff" else "--interpolate-to/--interpolate-seeds"
        if len(prompts) != 1 or args.num_images != 1 or args.grid or sweep or args.all_stages:
            raise UsageError(f"{flag} renders one prompt: give exactly one --prompt, and no --num-images, --grid, "
                             "--sweep or --all-stages")
        if args.out.suffix.lower() not in ("", ".png"):
            raise UsageError(f"--out {str(args.out)!r}: give a directory or a .png path")
    if current == "interpolate":
        if args.frames is not None and args.frames < 2:
            raise UsageError(f"--frames must be >= 2 (the two ends included), got {args.frames}")
        if args.frame_duration is not None and args.frame_duration < 1:
            raise UsageError(f"--frame-duration must be >= 1 ms, got {args.frame_duration}")
        if args.interpolate_to is not None and not args.interpolate_to.strip():
            raise UsageError("--interpolate-to is empty")
    if current == "text-diff" and not all(t.strip() for t in args.text_diff):
        raise UsageError("--text-diff SOURCE TARGET: both must be non-empty prompts")
    return _image_inputs(args) if current == "image" else None


def _needs(args: argparse.Namespace, ok: bool, *flags: tuple[str, str], what: str) -> None:
    for attribute, flag in flags:
        if not ok and getattr(args, attribute) not in (None, False):
            raise UsageError(f"{flag} needs {what}")


def _image_inputs(args: argparse.Namespace) -> ImageInputs:
    from .images import check_same_size, load_image, load_mask, open_image, outpaint_canvas

    if args.upscale is not None:
        image = load_image(args.upscale, "--upscale")
        return ImageInputs(image, None, {"mode": "upscale", "upscale": str(args.upscale)})
    if args.resample_steps < 1:
        raise UsageError(f"--resample-steps must be >= 1 (1 = no resampling), got {args.resample_steps}")
    if args.resample_steps > 1 and args.mask is None and args.outpaint is None:
        raise UsageError("--resample-steps needs --mask or --outpaint (it is for inpainting)")
    for value in args.strength or []:
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"--strength must be in [0, 1] (0 keeps the image, 1 ignores it), got {value}")
    settings: dict[str, Any] = {"init_image": str(args.init_image), "resample_steps": args.resample_steps}
    if args.outpaint is not None:
        if args.mask is not None:
            raise UsageError("--outpaint makes its own mask (the new border): drop --mask")
        try:
            canvas, mask = outpaint_canvas(open_image(args.init_image, "--init-image"), *args.outpaint)
        except ValueError as e:
            raise UsageError(f"--outpaint: {e}" if "cannot read" not in str(e) else str(e)) from None
        return ImageInputs(canvas, mask, {"mode": "outpaint", **settings, "outpaint": list(args.outpaint)})
    image = load_image(args.init_image, "--init-image")
    if args.mask is None:
        return ImageInputs(image, None, {"mode": "img2img", **settings})
    mask = load_mask(args.mask, "--mask")
    check_same_size(image, mask, "--mask", "--init-image")
    return ImageInputs(image, mask, {"mode": "inpaint", **settings, "mask": str(args.mask)})


def image_edit(args: argparse.Namespace, pipe, inputs: ImageInputs | None) -> tuple[Any, dict | None]:
    """The `ImageEdit` for this run (strength per stage resolved against the model) and its settings, or
    (None, None) without --init-image."""
    if inputs is None:
        return None, None
    from .image_edit import ImageEdit, stage_strengths

    stop = args.stop_at_stage
    stop = int(stop) if stop and stop.isdigit() else stop
    if inputs.settings["mode"] == "upscale":
        strengths = upscale_strengths(pipe, stop, inputs.image.shape[-1])
    else:
        default = DEFAULT_STRENGTH if inputs.mask is None else 1.0
        strengths = stage_strengths(pipe, args.strength or default, stop)
    edit = ImageEdit(inputs.image, inputs.mask, strengths, args.resample_steps)
    return edit, {**inputs.settings, "strength": strengths}


def upscale_strengths(pipe, stop_at_stage: int | str | None, side: int) -> dict[str, float]:
    """{stage name: strength} of an upscale: the image kept as the base stage's output (strength 0), every
    super-resolution stage sampled in full (1); a note on stderr when the image is resized."""
    import sys

    names = list(pipe.sampling_options(stop_at_stage=stop_at_stage))
    base = names[0]
    if len(names) < 2:
        raise UsageError("--upscale needs a super-resolution stage in the run: drop --stop-at-stage 1")
    resolution = pipe.stages[base].resolution
    if side != resolution:
        print(f"{PROG}: note: --upscale image is {side}x{side}; resized to {resolution}x{resolution}, the "
              f"{base} stage's resolution", file=sys.stderr)
    return {name: 0.0 if name == base else 1.0 for name in names}


def run(run, current: str) -> None:
    """The interpolation or text-diff mode of `imagen-sample` (`run`: imagen.cli.Run)."""
    (_interpolate if current == "interpolate" else _text_diff)(run)


def _common(run) -> dict:
    """The sampling options, negative prompt and batch size of the run, as the editing functions take them."""
    return {**run.kwargs, "negative_prompt": run.args.negative_prompt, "max_batch_size": run.args.max_batch_size}


def _interpolate(run) -> None:
    from .interpolation import gif_bytes, interpolate, strip, weights

    args, prompt = run.args, run.prompts[0]
    to_prompt = args.interpolate_to.strip() if args.interpolate_to is not None else prompt
    seed, to_seed = args.interpolate_seeds or (args.seed, args.seed)
    frames = args.frames or DEFAULT_FRAMES
    images = interpolate(run.pipe, prompt, to_prompt, seed=seed, to_seed=to_seed, frames=frames, **_common(run))
    final = list(run.options)[-1]
    if not run.single_png:
        width = max(3, len(str(frames - 1)))
        for k, (image, u) in enumerate(zip(images, weights(frames), strict=True)):
            label = prompt if u == 0 else to_prompt if u == 1 else f"{prompt} -> {to_prompt} (u={u:.3f})"
            settings = run.settings(run.options, final, label, seed if u < 1 else to_seed, k)
            settings["interpolation"] = {"from": {"prompt": prompt, "seed": seed},
                                         "to": {"prompt": to_prompt, "seed": to_seed}, "u": u, "frame": k}
            run.save(run.directory / f"{k:0{width}d}.png", image, label, settings)
    strip_path = args.out if run.single_png else run.directory / "interpolation.png"
    run.save(strip_path, strip(images))
    if args.gif:
        data = gif_bytes(images, args.frame_duration or DEFAULT_FRAME_MS)
        _write(run, strip_path.with_suffix(".gif"), data)


def _text_diff(run) -> None:
    from .prompt_diff import text_diff

    args, prompt = run.args, run.prompts[0]
    source, target = (t.strip() for t in args.text_diff)
    scales = args.diff_scale or [1.0]
    images = text_diff(run.pipe, prompt, source, target, scales, seed=args.seed, **_common(run))
    final = list(run.options)[-1]
    if not run.single_png:
        width = max(3, len(str(len(scales) - 1)))
        for k, (image, scale) in enumerate(zip(images, scales, strict=True)):
            settings = run.settings(run.options, final, prompt, args.seed, k)
            settings["text_diff"] = {"source": source, "target": target, "scale": scale}
            run.save(run.directory / f"{k:0{width}d}.png", image, prompt, settings)
    if len(scales) > 1 or run.single_png:
        from ..cli import _grid

        grid = images[0] if len(scales) == 1 else _grid(
            images, columns=len(scales), column_titles=[f"scale={s:g}" for s in scales],
            title=f"{prompt} + scale ({target} - {source}) (seed {args.seed})")
        run.save(args.out if run.single_png else run.directory / "text_diff.png", grid)


def _write(run, path: Path, data: bytes) -> None:
    from ..io import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    run.written.append(path)


def summary(run) -> str:
    """The last line of an interpolation or text-diff run: how many images, which strips, where."""
    images = sum(p.stem.isdigit() for p in run.written)
    extra = [p.name for p in run.written if not p.stem.isdigit()]
    where = run.args.out.parent if run.single_png else run.directory
    return f"{PROG}: wrote {', '.join([f'{images} image(s)'] * bool(images) + extra)} to {where}/"
