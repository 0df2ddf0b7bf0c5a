"""The ways `imagen-sample` runs, one class each behind one interface: `check` (before the model loads: flags and
image files), `options` (every stage's sampling options, resolved once), `run` (sample and write). `select_mode`
picks the one a command line asks for.

    Sample         text -> images (--num-images, --grid, --all-stages)
    ImageEditMode  --init-image: img2img, inpainting (--mask), outpainting (--outpaint); writes as Sample
    Upscale        --upscale: the super-resolution stages alone on a given image; writes as Sample
    Sweep          --sweep over one or two axes, for any of the three above
    Interpolate    --interpolate-to / --interpolate-seeds: frames, a strip, a GIF
    TextDiff       --text-diff: one image per scale
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from typing import Any

from .arguments import (
    DEFAULT_FRAME_MS,
    DEFAULT_FRAMES,
    SWEEP_AXES,
    check_option,
    check_seed,
    in_flags,
    percentiles,
    sampling_values,
)
from .common import UsageError, titled_grid
from .output import Output


@dataclass
class Session:
    """One invocation, once the model is loaded: the arguments, prompts and seed read from them, the pipe, every
    stage's resolved options, and where the files go."""

    args: argparse.Namespace
    prompts: list[str]
    seed: int
    pipe: Any
    options: dict
    output: Output

    def call_kwargs(self, options: dict | None = None) -> dict:
        """What every library call of the run takes: the resolved options, negative prompt, batch size, progress."""
        return {"options": self.options if options is None else options, "negative_prompt": self.args.negative_prompt,
                "max_batch_size": self.args.max_batch_size, "progress": not self.args.quiet}


class Mode:
    """The interface: `check(args, prompts)` before the model loads, `options(pipe, args)`, `run(session)`."""

    strip = False  # writes a strip of images from one prompt (interpolation, text-diff)

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        pass

    def suffixes(self, args: argparse.Namespace) -> tuple[str, ...]:
        """The files written for --out X.png, as suffixes of X: X.png, and X.gif for an interpolation's GIF."""
        return (".png",)

    def options(self, pipe, args: argparse.Namespace) -> dict:
        try:
            return pipe.sampling_options(**sampling_values(args))
        except ValueError as e:
            raise in_flags(e) from None

    def run(self, session: Session) -> None:
        raise NotImplementedError


class Sample(Mode):
    """Text to images; every final image as NNN.png, earlier stages with --all-stages, a grid with --grid."""

    def generate(self, session: Session, prompts: list[str], num_images: int, seed: int, options: dict):
        return session.pipe(prompts, num_images_per_prompt=num_images, seed=seed,
                            return_all_stages=session.args.all_stages, **session.call_kwargs(options))

    def run(self, session: Session) -> None:
        args, output = session.args, session.output
        out = self.generate(session, session.prompts, args.num_images, session.seed, session.options)
        stages = out.stage_images or {list(session.options)[-1]: out.images}
        final = list(stages)[-1]
        count = len(out.images)
        for name, images in stages.items():
            for i, image in enumerate(images):
                if output.single_png and not args.grid:
                    output.save(output.out, image)
                elif not output.single_png:
                    output.save(output.numbered(i, count, None if name == final else name), image)
        if args.grid:
            labels = [f"{s['prompt']} (seed {s['seed']})" for s in out.settings]
            columns = min(count, max(args.num_images, int(count ** 0.5 + 0.999)))
            output.save(output.named("grid.png"), titled_grid(out.images, labels=labels, columns=columns))


class ImageEditMode(Sample):
    """--init-image: img2img, or inpainting with --mask, or outpainting with --outpaint."""

    def __init__(self):
        self.image = self.mask = None
        self.files: dict = {}

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        from ..editing.images import check_same_size, load_image, load_mask, open_image, outpaint_canvas

        if args.resample_steps < 1:
            raise UsageError(f"--resample-steps must be >= 1 (1 = no resampling), got {args.resample_steps}")
        if args.resample_steps > 1 and args.mask is None and args.outpaint is None:
            raise UsageError("--resample-steps needs --mask or --outpaint (it is for inpainting)")
        for value in args.strength or []:
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"--strength must be in [0, 1] (0 keeps the image, 1 ignores it), got {value}")
        self.files = {"init_image": str(args.init_image)}
        if args.outpaint is not None:
            if args.mask is not None:
                raise UsageError("--outpaint makes its own mask (the new border): drop --mask")
            if args.strength is not None:
                raise UsageError("--outpaint generates the whole border: drop --strength")
            try:
                outpaint_canvas(open_image(args.init_image, "--init-image"), *args.outpaint)
            except ValueError as e:
                raise UsageError(f"--outpaint: {e}" if "cannot read" not in str(e) else str(e)) from None
            self.image = args.init_image
            return
        self.image = load_image(args.init_image, "--init-image")
        if args.mask is not None:
            self.mask = load_mask(args.mask, "--mask")
            check_same_size(self.image, self.mask, "--mask", "--init-image")
            self.files["mask"] = str(args.mask)

    def generate(self, session: Session, prompts: list[str], num_images: int, seed: int, options: dict):
        args, pipe = session.args, session.pipe
        common = {"num_images_per_prompt": num_images, "seed": seed, "return_all_stages": args.all_stages,
                  **session.call_kwargs(options)}
        if args.outpaint is not None:
            out = pipe.outpaint(prompts, self.image, args.outpaint, resample_steps=args.resample_steps, **common)
        elif self.mask is not None:
            out = pipe.inpaint(prompts, self.image, self.mask, strength=args.strength or 1.0,
                               resample_steps=args.resample_steps, **common)
        else:
            out = pipe.img2img(prompts, self.image, args.strength, **common)
        return _with_files(out, self.files)


class Upscale(Sample):
    """--upscale IMG: the super-resolution stages alone on IMG."""

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        from ..editing.images import load_image

        self.image = load_image(args.upscale, "--upscale")

    def options(self, pipe, args: argparse.Namespace) -> dict:
        sr_names = [n for n, stage in pipe.stages.items() if stage.config.is_super_resolution]
        if not sr_names:
            raise UsageError("--upscale needs a model with super-resolution stages")
        try:
            return pipe.sampling_options(**sampling_values(args), start_at_stage=sr_names[0])
        except ValueError as e:
            raise UsageError(f"--upscale runs the super-resolution stages: {in_flags(e)}") from None

    def generate(self, session: Session, prompts: list[str], num_images: int, seed: int, options: dict):
        out = session.pipe.upscale(prompts, self.image, num_images_per_prompt=num_images, seed=seed,
                                   return_all_stages=session.args.all_stages, **session.call_kwargs(options))
        return _with_files(out, {"upscale": str(session.args.upscale)})


@dataclass(frozen=True)
class SweepAxis:
    option: str  # the CLI name, e.g. "guidance-scale"
    stage: str | None  # None: every stage it applies to
    values: tuple

    @property
    def label(self) -> str:
        return self.option + (f"@{self.stage}" if self.stage else "")


class Sweep(Mode):
    """One image per value of one or two axes (rows x columns), same prompt and seed, as a labelled grid."""

    def __init__(self, inner: Sample, specs: list[str]):
        self.inner, self.axes = inner, parse_sweep(specs)

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        if len(prompts) != 1 or args.num_images != 1:
            raise UsageError("--sweep renders one prompt and seed: give exactly one prompt and no --num-images")
        if args.all_stages:
            raise UsageError("--sweep writes the final images: drop --all-stages")
        self.inner.check(args, prompts)

    def options(self, pipe, args: argparse.Namespace) -> dict:
        options = self.inner.options(pipe, args)
        for axis in self.axes:
            if axis.stage is not None and axis.stage not in options:
                raise UsageError(f"--sweep {axis.label}: no stage {axis.stage!r} in this run ({', '.join(options)})")
            if axis.option == "aug-level" and axis.stage and options[axis.stage].aug_level is None:
                raise UsageError(f"--sweep {axis.label}: {axis.stage} is not a super-resolution stage")
        return options

    def run(self, session: Session) -> None:
        row_axis, column_axis = (self.axes[0], self.axes[1]) if len(self.axes) == 2 else (None, self.axes[0])
        rows = row_axis.values if row_axis else (None,)
        cells, prompt, output = [], session.prompts[0], session.output
        for r, row_value in enumerate(rows):
            for c, column_value in enumerate(column_axis.values):
                chosen = ([(row_axis, row_value)] if row_axis else []) + [(column_axis, column_value)]
                options = swept(session.options, chosen)
                image = self.inner.generate(session, [prompt], 1, session.seed, options).images[0]
                image = _with_settings(image, {"sweep": {axis.label: value for axis, value in chosen}})
                cells.append(image)
                if not output.single_png:
                    output.save(output.named(f"sweep_{r * len(column_axis.values) + c:03d}.png"), image)
        grid = titled_grid(cells, columns=len(column_axis.values),
                           row_titles=[f"{row_axis.label}={v}" for v in rows] if row_axis else None,
                           column_titles=[f"{column_axis.label}={v}" for v in column_axis.values],
                           title=f"{prompt} (seed {session.seed})")
        output.save(output.named("sweep.png"), grid)


def parse_sweep(specs: list[str]) -> list[SweepAxis]:
    """`AXIS[@STAGE]=V1,V2,...` items -> one or two axes; UsageError for anything else."""
    if len(specs) > 2:
        raise UsageError(f"--sweep takes one or two axes (rows, columns), got {len(specs)}")
    axes = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        option, _, stage = name.strip().partition("@")
        if not sep or option not in SWEEP_AXES:
            raise UsageError(f"--sweep {spec!r}: expected AXIS=V1,V2,... with AXIS one of {', '.join(SWEEP_AXES)} "
                             "(optionally AXIS@STAGE)")
        field, kind = SWEEP_AXES[option]
        try:
            values = tuple(kind(v) for v in raw.split(","))
        except ValueError:
            raise UsageError(f"--sweep {spec!r}: values must be comma-separated {kind.__name__}s") from None
        axis = SweepAxis(option, stage or None, values)
        for value in values:
            check_option(field, value, f"--sweep {axis.label}")
        axes.append(axis)
    if len(axes) == 2 and axes[0].label == axes[1].label:
        raise UsageError(f"--sweep: axis {axes[0].label} is given twice")
    return axes


def swept(options: dict, chosen: list[tuple[SweepAxis, Any]]) -> dict:
    """The resolved options with the sweep's values (checked by `parse_sweep`) put in, each axis at its stage or
    every stage it applies to."""
    options = dict(options)
    for axis, value in chosen:
        field = SWEEP_AXES[axis.option][0]
        value = percentiles([value])[0] if field == "dynamic_percentile" else value
        for name in [axis.stage] if axis.stage else list(options):
            if field != "aug_level" or options[name].aug_level is not None:
                options[name] = replace(options[name], **{field: value})
    return options


class Interpolate(Mode):
    """N frames from (--prompt, S1) to (--interpolate-to, S2): frames, a strip and a GIF."""

    strip = True

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        if args.frames is not None and args.frames < 2:
            raise UsageError(f"--frames must be >= 2 (the two ends included), got {args.frames}")
        if args.frame_duration is not None and args.frame_duration < 1:
            raise UsageError(f"--frame-duration must be >= 1 ms, got {args.frame_duration}")
        if args.interpolate_to is not None and not args.interpolate_to.strip():
            raise UsageError("--interpolate-to is empty")
        for seed in args.interpolate_seeds or []:
            check_seed(seed, "--interpolate-seeds")

    def suffixes(self, args: argparse.Namespace) -> tuple[str, ...]:
        return (".png", ".gif") if args.gif else (".png",)

    def run(self, session: Session) -> None:
        from ..editing.interpolation import gif_bytes, strip

        args, prompt, output = session.args, session.prompts[0], session.output
        to_prompt = args.interpolate_to.strip() if args.interpolate_to is not None else prompt
        seed, to_seed = args.interpolate_seeds or (session.seed, session.seed)
        frames = args.frames or DEFAULT_FRAMES
        images = session.pipe.interpolate(prompt, to_prompt, seed=seed, to_seed=to_seed, frames=frames,
                                          **session.call_kwargs()).images
        if not output.single_png:
            for k, image in enumerate(images):
                output.save(output.numbered(k, frames), image)
        strip_path = output.named("interpolation.png")
        output.save(strip_path, strip(images))
        if args.gif:
            output.write(output.named("interpolation.gif"), gif_bytes(images, args.frame_duration or DEFAULT_FRAME_MS))


class TextDiff(Mode):
    """The prompt's text embedding moved by F (TARGET - SOURCE), one image per scale F."""

    strip = True

    def check(self, args: argparse.Namespace, prompts: list[str]) -> None:
        if not all(t.strip() for t in args.text_diff):
            raise UsageError("--text-diff SOURCE TARGET: both must be non-empty prompts")

    def run(self, session: Session) -> None:
        args, prompt, output = session.args, session.prompts[0], session.output
        source, target = (t.strip() for t in args.text_diff)
        scales = args.diff_scale or [1.0]
        images = session.pipe.text_diff(prompt, source, target, scales, seed=session.seed,
                                        **session.call_kwargs()).images
        if not output.single_png:
            for k, image in enumerate(images):
                output.save(output.numbered(k, len(scales)), image)
        if len(scales) > 1 or output.single_png:
            grid = images[0] if len(scales) == 1 else titled_grid(
                images, columns=len(scales), column_titles=[f"scale={s:g}" for s in scales],
                title=f"{prompt} + scale ({target} - {source}) (seed {session.seed})")
            output.save(output.named("text_diff.png"), grid)


def select_mode(args: argparse.Namespace, prompts: list[str]) -> Mode:
    """The one mode the flags ask for, after the checks that need no model; UsageError for a mix."""
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
    current = chosen[0] if chosen else None
    _needs(args, args.init_image is not None, ("strength", "--strength"), ("mask", "--mask"),
           ("outpaint", "--outpaint"), what="--init-image")
    if args.resample_steps != 1 and args.init_image is None:
        raise UsageError("--resample-steps needs --init-image with --mask or --outpaint")
    _needs(args, current == "interpolate", ("frames", "--frames"), ("gif", "--gif"),
           ("frame_duration", "--frame-duration"), what="--interpolate-to or --interpolate-seeds")
    _needs(args, current == "text-diff", ("diff_scale", "--diff-scale"), what="--text-diff")
    if args.num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {args.num_images}")
    if args.max_batch_size is not None and args.max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if current in ("interpolate", "text-diff"):
        flag = "--text-diff" if current == "text-diff" else "--interpolate-to/--interpolate-seeds"
        if len(prompts) != 1 or args.num_images != 1 or args.grid or args.sweep or args.all_stages:
            raise UsageError(f"{flag} renders one prompt: give exactly one --prompt, and no --num-images, --grid, "
                             "--sweep or --all-stages")
        if args.out.suffix.lower() not in ("", ".png"):
            raise UsageError(f"--out {str(args.out)!r}: give a directory or a .png path")
        mode: Mode = Interpolate() if current == "interpolate" else TextDiff()
    else:
        mode = Upscale() if args.upscale is not None else ImageEditMode() if args.init_image is not None else Sample()
        mode = Sweep(mode, args.sweep) if args.sweep else mode
        single_png = args.out.suffix.lower() == ".png"
        if single_png and args.all_stages:
            raise UsageError("--all-stages writes several files: give --out a directory")
        if single_png and not (args.grid or args.sweep) and len(prompts) * args.num_images != 1:
            raise UsageError(f"--out {str(args.out)!r} is one .png but this run makes "
                             f"{len(prompts) * args.num_images} images: give a directory, or add --grid")
    mode.check(args, prompts)
    return mode


def _needs(args: argparse.Namespace, ok: bool, *flags: tuple[str, str], what: str) -> None:
    for attribute, flag in flags:
        if not ok and getattr(args, attribute) not in (None, False):
            raise UsageError(f"{flag} needs {what}")


def _with_settings(image, extra: dict):
    """`image` with `extra` merged into the settings in its `.info`."""
    from ..output import annotate

    return annotate(image, {**json.loads(image.info.get("settings", "{}")), **extra})


def _with_files(out, files: dict):
    """An edit's output with the input files named in each image's settings["edit"]."""
    for images in [out.images, *(out.stage_images or {}).values()]:
        for image in images:
            settings = json.loads(image.info.get("settings", "{}"))
            _with_settings(image, {"edit": {**settings.get("edit", {}), **files}})
    return out
