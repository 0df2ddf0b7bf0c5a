"""`imagen-sample`: text -> images with a saved cascade, from the command line.

    imagen-sample --model runs/tiny --prompt "a large red circle at the center on a blue background"
    imagen-sample --model shapes --prompts-file prompts.txt --num-images 4 --guidance-scale 5 4 1 --grid
    imagen-sample --model shapes --prompt "..." --stop-at-stage 2 --sweep aug-level=0,0.1,0.2,0.3 \\
                  guidance-scale@sr1=1,3,5,8
    imagen-sample --model shapes --prompt "..." --init-image in.png --mask mask.png      # inpainting
    imagen-sample --model shapes --prompt "..." --interpolate-to "..." --frames 8 --gif  # interpolation

Editing and exploring (--init-image, --mask, --outpaint, --interpolate-*, --text-diff) live in
imagen.editing.cli.

Writes one PNG per image (`000.png`, `001.png`, ... in --out, or --out itself when it names one .png), each
carrying the PNG text chunks `prompt` (read by imagen-eval) and `settings` (JSON: model, stage, seed and
every stage's resolved sampling options, enough to reproduce the image). Errors in the arguments, the
model or the prompts exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

PROG = "imagen-sample"
SAMPLER_CHOICES = ("ddpm", "ddim", "dpm++")  # checked against imagen.samplers.SAMPLERS in the tests
THRESHOLDING_CHOICES = ("none", "static", "dynamic")
TIME_GRID_CHOICES = ("uniform", "logsnr", "karras")
# sweep axis -> (generate() argument, value type)
SWEEP_AXES = {"aug-level": ("aug_level", float), "guidance-scale": ("guidance_scale", float),
              "steps": ("num_steps", int), "dynamic-percentile": ("dynamic_percentile", float)}
MIN_GRID_CELL, MAX_GRID_CELL = 128, 512


DESCRIPTION = """\
Generate images from text with a saved Imagen cascade (base stage, then super-resolution stages).
Per-stage options take one value for every stage, or one per stage in cascade order
(--aug-level: one per super-resolution stage); unset ones keep the model's configured values."""
EPILOG = f"""\
outputs:
  --out DIR gets NNN.png (final stage) for image N = p * K + k (prompt p, copy k of K = --num-images),
  drawn with seed --seed + N; also grid.png (--grid), STAGE/NNN.png for the earlier stages (--all-stages),
  or sweep.png and sweep_NNN.png (--sweep). Every image PNG has the text chunks 'prompt' and 'settings'
  (JSON: model, seed, every stage's options). An image does not depend on the rest of its batch: re-run
  one with its prompt alone and --seed set to its seed.

sweep:
  --sweep AXIS=V1,V2,... [AXIS=...] renders one image per value (one axis: a row; two: rows x columns)
  for one prompt and seed, as a labelled grid. Axes: {", ".join(SWEEP_AXES)}.
  AXIS@STAGE changes that stage only, a bare AXIS every stage it applies to. The paper's sweep (64 -> 256 px):
    imagen-sample --model M --prompt TEXT --stop-at-stage 2 \\
                  --sweep aug-level=0,0.1,0.2,0.3 guidance-scale@sr1=1,3,5,8"""
EXIT_STATUS = "exit status: 0 on success, 2 on a usage error (bad model, option, prompt, image or output path)."


class UsageError(ValueError):
    """A user error: exit 2 with its one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .editing import cli as editing_cli

    parser = _Parser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION, epilog="\n\n".join([EPILOG, editing_cli.EPILOG, EXIT_STATUS]))
    parser.add_argument("--model", required=True, metavar="NAME_OR_DIR",
                        help="a shipped model name, a directory written by save_pretrained / imagen-train, or a "
                             "Hugging Face hub name already in the local cache (nothing is downloaded)")
    text = parser.add_argument_group("prompts")
    text.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                      help="a text prompt; repeat for several")
    text.add_argument("--prompts-file", type=Path, metavar="FILE",
                      help="a UTF-8 text file with one prompt a line (blank lines and lines starting with # are "
                           "skipped); used after the --prompt ones")
    text.add_argument("--negative-prompt", metavar="TEXT",
                      help="text to steer away from: its embedding replaces the null condition of classifier-free "
                           "guidance (every image, every guided stage)")
    sampling = parser.add_argument_group("sampling (per stage: one value for all stages, or one per stage)")
    sampling.add_argument("--guidance-scale", type=float, nargs="+", metavar="G",
                          help="classifier-free guidance weight w (1 = no guidance; paper: 5 or more with "
                               "dynamic thresholding); default: each stage's configured value")
    sampling.add_argument("--steps", type=int, nargs="+", metavar="N", help="sampling steps (network evaluations)")
    sampling.add_argument("--sampler", nargs="+", choices=SAMPLER_CHOICES, metavar="NAME",
                          help=f"sampler: {', '.join(SAMPLER_CHOICES)} (dpm++ = DPM-Solver++ multistep, good in "
                               "15-25 steps; ddpm = ancestral)")
    sampling.add_argument("--thresholding", nargs="+", choices=THRESHOLDING_CHOICES, metavar="MODE",
                          help="x0 thresholding: none, static (clip to [-1, 1]) or dynamic (per-image percentile "
                               "rescale, needed for large guidance)")
    sampling.add_argument("--dynamic-percentile", type=float, nargs="+", metavar="P",
                          help="percentile of |x0| for dynamic thresholding, as a fraction (0.995) or a percent "
                               "(99.5)")
    sampling.add_argument("--aug-level", type=float, nargs="+", metavar="A",
                          help="noise-conditioning augmentation level of the low-res input of each "
                               "super-resolution stage, in [0, 1] (paper: 0.1-0.3 for samples, 0 for FID)")
    sampling.add_argument("--time-grid", nargs="+", choices=TIME_GRID_CHOICES, metavar="GRID",
                          help=f"spacing of the sampling times: {', '.join(TIME_GRID_CHOICES)}")
    sampling.add_argument("--seed", type=int, default=0, help="seed of image 0; image N uses seed + N (default 0)")
    sampling.add_argument("--num-images", type=int, default=1, metavar="K", help="images per prompt (default 1)")
    sampling.add_argument("--stop-at-stage", metavar="K",
                          help="stop after stage K (1 = base only; a number or a stage name: base, sr1, sr2)")
    sampling.add_argument("--sweep", nargs="+", metavar="AXIS=V,V,...",
                          help="render a labelled grid over one or two axes for one prompt and seed (see below)")
    editing_cli.add_arguments(parser)
    run = parser.add_argument_group("output and device")
    run.add_argument("--out", type=Path, default=Path("samples"), metavar="DIR_OR_PNG",
                     help="output directory (default: samples), or a .png path for a single image (with --grid "
                          "or --sweep: the grid itself)")
    run.add_argument("--grid", action="store_true",
                     help="also write grid.png: every final image with its prompt and seed written under it")
    run.add_argument("--all-stages", action="store_true",
                     help="also write every earlier stage's images, as STAGE/NNN.png in the output directory")
    run.add_argument("--device", default="auto",
                     help="auto (a GPU if there is one, else the CPU), cpu, cuda, cuda:N or mps (default auto)")
    run.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                     help="precision of the U-Nets (default float32; bfloat16 or float16 halve their memory, e.g. "
                          "on a GPU; on a CPU bfloat16 is close to float32, float16 is slow)")
    run.add_argument("--max-batch-size", type=int, metavar="N",
                     help="images sampled together at most (less memory; results do not change)")
    return parser


@dataclass(frozen=True)
class SweepAxis:
    option: str  # the CLI name, e.g. "guidance-scale"
    stage: str | None  # None: every stage it applies to
    values: tuple

    @property
    def label(self) -> str:
        return self.option + (f"@{self.stage}" if self.stage else "")


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
        kind = SWEEP_AXES[option][1]
        try:
            values = tuple(kind(v) for v in raw.split(","))
        except ValueError:
            raise UsageError(f"--sweep {spec!r}: values must be comma-separated {kind.__name__}s") from None
        axes.append(SweepAxis(option, stage or None, values))
    if len(axes) == 2 and axes[0].label == axes[1].label:
        raise UsageError(f"--sweep: axis {axes[0].label} is given twice")
    return axes


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt)
    if args.prompts_file is not None:
        try:
            lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --prompts-file {str(args.prompts_file)!r}: "
                             f"{getattr(e, 'strerror', None) or e}") from None
        prompts += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError("no prompt: give --prompt TEXT (repeatable) or --prompts-file FILE")
    for number, prompt in enumerate(prompts, start=1):
        if not prompt.strip():
            raise UsageError(f"prompt {number} is empty")
    return [p.strip() for p in prompts]


def check_arguments(args: argparse.Namespace, prompts: list[str], sweep: list[SweepAxis]):
    """Everything that can be checked before the model is loaded; returns the checked image inputs of an
    image edit (imagen.editing.cli.ImageInputs) or None."""
    from .editing import cli as editing_cli

    if args.num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {args.num_images}")
    if args.max_batch_size is not None and args.max_batch_size < 1:
        raise UsageError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if sweep and (len(prompts) != 1 or args.num_images != 1):
        raise UsageError("--sweep renders one prompt and seed: give exactly one prompt and no --num-images")
    single_png = args.out.suffix.lower() == ".png"
    if single_png and args.all_stages:
        raise UsageError("--all-stages writes several files: give --out a directory")
    strip = editing_cli.mode(args) in ("interpolate", "text-diff")
    if single_png and not (args.grid or sweep or strip) and len(prompts) * args.num_images != 1:
        raise UsageError(f"--out {str(args.out)!r} is one .png but this run makes {len(prompts) * args.num_images} "
                         "images: give a directory, or add --grid")
    return editing_cli.check(args, prompts, sweep)


def percentiles(values: list[float] | None) -> list[float] | None:
    """Accept 99.5 as well as 0.995."""
    return None if values is None else [v / 100 if 1 < v <= 100 else v for v in values]


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    stop = args.stop_at_stage
    return {"guidance_scale": args.guidance_scale, "num_steps": args.steps, "sampler": args.sampler,
            "thresholding": args.thresholding, "dynamic_percentile": percentiles(args.dynamic_percentile),
            "aug_level": args.aug_level, "time_grid": args.time_grid,
            "stop_at_stage": int(stop) if stop is not None and stop.isdigit() else stop}


def png_bytes(image, prompt: str, settings: dict) -> bytes:
    """The image as PNG with text chunks `prompt` and `settings` (JSON)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("prompt", prompt)
    info.add_text("settings", json.dumps(settings, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(path: Path, image, prompt: str | None = None, settings: dict | None = None) -> None:
    from .io import atomic_write

    if prompt is None:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        atomic_write(path, buffer.getvalue())
    else:
        atomic_write(path, png_bytes(image, prompt, settings or {}))


class Run:
    """One invocation: the loaded pipe, the resolved options and where the files go."""

    def __init__(self, args: argparse.Namespace, pipe, prompts: list[str], image_inputs=None):
        from .editing import cli as editing_cli

        self.args, self.pipe, self.prompts = args, pipe, prompts
        self.kwargs = sampling_kwargs(args)
        self.options = pipe.sampling_options(**self.kwargs)  # checks every option before any sampling
        self.edit, self.edit_settings = editing_cli.image_edit(args, pipe, image_inputs)
        self.single_png = args.out.suffix.lower() == ".png"
        self.directory = args.out.parent if self.single_png else args.out
        self.written: list[Path] = []

    def settings(self, options: dict, stage: str, prompt: str, seed: int, index: int) -> dict:
        """What made an image of `stage`: the model, prompt, seed and the options of every stage up to it."""
        names = list(options)[: list(options).index(stage) + 1]
        edit = {"edit": self.edit_settings} if self.edit_settings else {}
        return {**edit, "model": self.args.model, "prompt": prompt, "negative_prompt": self.args.negative_prompt,
                "seed": seed, "index": index, "stage": stage, "resolution": self.pipe.stages[stage].resolution,
                "device": str(self.pipe.device), "dtype": self.args.dtype,
                "text_encoder": self.pipe.config.text.name,
                "stages": {name: {"resolution": self.pipe.stages[name].resolution, **options[name].as_dict()}
                           for name in names}}

    def generate(self, prompts: list[str], seed: int, num_images: int, **overrides) -> dict:
        kwargs = {**self.kwargs, **overrides}
        return self.pipe.generate(prompts, seed=seed, num_images_per_prompt=num_images,
                                  negative_prompt=self.args.negative_prompt,
                                  max_batch_size=self.args.max_batch_size, edit=self.edit, **kwargs)

    def save(self, path: Path, image, prompt: str | None = None, settings: dict | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image, prompt, settings)
        self.written.append(path)

    def sample(self) -> None:
        from .images import to_pil

        args = self.args
        outputs = self.generate(self.prompts, args.seed, args.num_images)
        names = list(outputs)
        prompts = [p for p in self.prompts for _ in range(args.num_images)]
        width = max(3, len(str(len(prompts) - 1)))
        finals = to_pil(outputs[names[-1]])
        for name in names if args.all_stages else names[-1:]:
            images = finals if name == names[-1] else to_pil(outputs[name])
            folder = self.directory if name == names[-1] else self.directory / name
            for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
                settings = self.settings(self.options, name, prompt, args.seed + i, i)
                if self.single_png and not args.grid:
                    self.save(args.out, image, prompt, settings)
                elif not self.single_png:
                    self.save(folder / f"{i:0{width}d}.png", image, prompt, settings)
        if args.grid:
            labels = [f"{p} (seed {args.seed + i})" for i, p in enumerate(prompts)]
            columns = min(len(finals), max(args.num_images, int(len(finals) ** 0.5 + 0.999)))
            grid = _grid(finals, labels=labels, columns=columns)
            self.save(args.out if self.single_png else self.directory / "grid.png", grid)

    def sweep(self, axes: list[SweepAxis]) -> None:
        """One image per value (one axis: a row; two: rows = the first axis, columns = the second), same
        prompt and seed, as a labelled grid."""
        from .images import to_pil

        row_axis, column_axis = (axes[0], axes[1]) if len(axes) == 2 else (None, axes[0])
        rows = row_axis.values if row_axis else (None,)
        cells, prompt, names = [], self.prompts[0], list(self.options)
        for r, row_value in enumerate(rows):
            for c, column_value in enumerate(column_axis.values):
                chosen = ([(row_axis, row_value)] if row_axis else []) + [(column_axis, column_value)]
                options = self._swept_options(chosen)
                final = to_pil(self.generate([prompt], self.args.seed, 1, **_as_generate_kwargs(options))[names[-1]])
                cells.append(final[0])
                if not self.single_png:
                    index = r * len(column_axis.values) + c
                    settings = self.settings(options, names[-1], prompt, self.args.seed, index)
                    settings["sweep"] = {axis.label: value for axis, value in chosen}
                    self.save(self.directory / f"sweep_{index:03d}.png", final[0], prompt, settings)
        grid = _grid(cells, columns=len(column_axis.values),
                     row_titles=[f"{row_axis.label}={v}" for v in rows] if row_axis else None,
                     column_titles=[f"{column_axis.label}={v}" for v in column_axis.values],
                     title=f"{prompt} (seed {self.args.seed})")
        self.save(self.args.out if self.single_png else self.directory / "sweep.png", grid)

    def _swept_options(self, chosen: list[tuple[SweepAxis, Any]]) -> dict:
        """The resolved options with the sweep's values put in (each axis: its stage, or every stage it
        applies to)."""
        from dataclasses import replace

        options = dict(self.options)
        for axis, value in chosen:
            field = SWEEP_AXES[axis.option][0]
            value = percentiles([value])[0] if field == "dynamic_percentile" else value
            if axis.stage is not None and axis.stage not in options:
                raise UsageError(f"--sweep {axis.label}: no stage {axis.stage!r} in this run "
                                 f"({', '.join(options)})")
            for name in [axis.stage] if axis.stage else list(options):
                if field == "aug_level" and options[name].aug_level is None:
                    if axis.stage:
                        raise UsageError(f"--sweep {axis.label}: {name} is not a super-resolution stage")
                    continue
                options[name] = replace(options[name], **{field: value})
        for name, stage_options in options.items():
            try:
                options[name] = self.pipe.stages[name].resolve_options(stage_options)
            except ValueError as e:
                raise UsageError(f"--sweep: {e}") from None
        return options

    def summary(self) -> str:
        if self.single_png:
            return f"{PROG}: wrote {self.args.out}"
        grids = [p.name for p in self.written if p.parent == self.directory and p.name in ("grid.png", "sweep.png")]
        finals = sum(p.parent == self.directory for p in self.written) - len(grids)
        earlier = len(self.written) - finals - len(grids)
        parts = [f"{finals} image(s)"] + ([f"{earlier} of earlier stages"] if earlier else []) + grids
        return f"{PROG}: wrote {', '.join(parts)} to {self.directory}/"


def _as_generate_kwargs(options: dict) -> dict:
    """Per-stage lists of resolved options, as `generate` takes them."""
    names = list(options)
    kwargs = {field: [getattr(options[n], field) for n in names]
              for field in ("guidance_scale", "num_steps", "sampler", "thresholding", "dynamic_percentile",
                            "time_grid")}
    kwargs["aug_level"] = [options[n].aug_level for n in names if options[n].aug_level is not None] or None
    return kwargs


def _grid(images, *, labels=None, columns=None, row_titles=None, column_titles=None, title=None):
    from PIL import Image, ImageDraw, ImageFont

    from .grid import labelled_grid

    cell = max(MIN_GRID_CELL, min(MAX_GRID_CELL, images[0].width))
    grid = labelled_grid(images, labels=labels, columns=columns, cell=cell, row_titles=row_titles,
                         column_titles=column_titles)
    if not title:
        return grid
    font = ImageFont.load_default()
    chars = max(20, grid.width // 6)
    lines = [title[i:i + chars] for i in range(0, len(title), chars)]
    band = 6 + 12 * len(lines)
    out = Image.new("RGB", (grid.width, grid.height + band), "white")
    out.paste(grid, (0, band))
    draw = ImageDraw.Draw(out)
    for k, line in enumerate(lines):
        draw.text((4, 3 + 12 * k), line, fill="black", font=font)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return int(e.code or 0)
    try:
        return _run(args)
    except (UsageError, ValueError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    prompts = read_prompts(args)
    sweep = parse_sweep(args.sweep) if args.sweep else []
    image_inputs = check_arguments(args, prompts, sweep)
    from .editing import cli as editing_cli
    from .pipeline import Imagen, resolve_device

    device = resolve_device(args.device)
    pipe = Imagen.from_pretrained(args.model, device=device, dtype=args.dtype)
    run = Run(args, pipe, prompts, image_inputs)
    try:
        (run.directory if not run.single_png else run.args.out.parent).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create the output directory {str(run.directory)!r}: {e.strerror or e}") from None
    explore = editing_cli.mode(args) in ("interpolate", "text-diff")
    if sweep:
        run.sweep(sweep)
    elif explore:
        editing_cli.run(run, editing_cli.mode(args))
    else:
        run.sample()
    print(editing_cli.summary(run) if explore else run.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
