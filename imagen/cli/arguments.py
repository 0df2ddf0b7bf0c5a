"""The arguments of `imagen-sample`: the parser, and what is read from them before the model loads (prompts,
seed, per-stage sampling values)."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from configs import PRECISIONS, SAMPLER_NAMES, THRESHOLDING_MODES, TIME_GRID_NAMES

from ..options import IMG2IMG_STRENGTH
from .common import Parser, UsageError

PROG = "imagen-sample"
MAX_PROMPTS_FILE = 16 * 2**20  # bytes of --prompts-file
MAX_PROMPT_CHARS = 1000  # longer prompts are cut (a text encoder reads at most a few hundred tokens)
DEFAULT_FRAMES, DEFAULT_FRAME_MS = 8, 150
# sweep axis -> (SamplingOptions field, value type)
SWEEP_AXES = {"aug-level": ("aug_level", float), "guidance-scale": ("guidance_scale", float),
              "steps": ("num_steps", int), "dynamic-percentile": ("dynamic_percentile", float)}

DESCRIPTION = """\
Generate images from text with a saved Imagen cascade (base stage, then super-resolution stages).
Per-stage options take one value for every stage, or one per stage run in cascade order
(--aug-level: one per super-resolution stage run); unset ones keep the model's configured values."""
OUTPUTS = """\
outputs:
  --out DIR gets NNN.png (final stage) per image, numbered after the highest number already in DIR or its
  stage folders (from 000 with --overwrite); image N = p * K + k of the run (prompt p, copy k of K =
  --num-images) is drawn with seed --seed + N. Also grid.png (--grid), STAGE/NNN.png for the earlier stages
  (--all-stages), or sweep.png and sweep_NNN.png (--sweep); a name already taken gets a suffix (grid-2.png).
  --out X.png writes that one file (and X.gif with --gif) and refuses to replace either without --overwrite.
  Every image PNG has the text chunks 'prompt' and 'settings' (JSON: model, seed, every stage's options). An
  image does not depend on the rest of its batch: re-run one with its prompt alone and --seed set to its seed
  (equal to within one level: batched convolutions round a few values differently).

sweep:
  --sweep AXIS=V1,V2,... [AXIS=...] renders one image per value (one axis: a row; two: rows x columns)
  for one prompt and seed, as a labelled grid. Axes: {axes}.
  AXIS@STAGE changes that stage only, a bare AXIS every stage it applies to. The paper's sweep (64 -> 256 px):
    imagen-sample --model M --prompt TEXT --stop-at-stage 2 \\
                  --sweep aug-level=0,0.1,0.2,0.3 guidance-scale@sr1=1,3,5,8""".format(axes=", ".join(SWEEP_AXES))
EDITING = """\
editing a given image (white mask pixels = regenerate, black = keep; any image mode; masks split at grey 128):
  --upscale IMG                            upscaler: the super-resolution stages alone on IMG (square, any size;
                                           resized to the first SR stage's input, e.g. 64 px), the prompt
                                           describing it; per-stage options count the SR stages
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
EXIT_STATUS = "exit status: 0 on success, 2 on a usage error (bad model, option, prompt, image or output path)."


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=DESCRIPTION, epilog="\n\n".join([OUTPUTS, EDITING, EXIT_STATUS]))
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
    sampling = parser.add_argument_group("sampling (per stage: one value for all stages, or one per stage run)")
    sampling.add_argument("--guidance-scale", type=float, nargs="+", metavar="G",
                          help="classifier-free guidance weight w (1 = no guidance; paper: 5 or more with "
                               "dynamic thresholding); default: each stage's configured value")
    sampling.add_argument("--steps", type=int, nargs="+", metavar="N", help="sampling steps (network evaluations)")
    sampling.add_argument("--sampler", nargs="+", choices=SAMPLER_NAMES, metavar="NAME",
                          help=f"sampler: {', '.join(SAMPLER_NAMES)} (dpm++ = DPM-Solver++ multistep, good in "
                               "15-25 steps; ddpm = ancestral)")
    sampling.add_argument("--thresholding", nargs="+", choices=THRESHOLDING_MODES, metavar="MODE",
                          help="x0 thresholding: none, static (clip to [-1, 1]) or dynamic (per-image percentile "
                               "rescale, needed for large guidance)")
    sampling.add_argument("--dynamic-percentile", type=float, nargs="+", metavar="P",
                          help="percentile of |x0| for dynamic thresholding, as a fraction (0.995) or a percent "
                               "(99.5)")
    sampling.add_argument("--aug-level", type=float, nargs="+", metavar="A",
                          help="noise-conditioning augmentation level of the low-res input of each "
                               "super-resolution stage, in [0, 1] (paper: 0.1-0.3 for samples, 0 for FID)")
    sampling.add_argument("--time-grid", nargs="+", choices=TIME_GRID_NAMES, metavar="GRID",
                          help=f"spacing of the sampling times: {', '.join(TIME_GRID_NAMES)}")
    sampling.add_argument("--seed", default="0", metavar="N|random",
                          help="seed of image 0, from -2**63 to 2**63 - 1; image N uses seed + N (default 0; 'random' "
                               "picks one, printed and stored in the PNGs)")
    sampling.add_argument("--num-images", type=int, default=1, metavar="K", help="images per prompt (default 1)")
    sampling.add_argument("--stop-at-stage", metavar="K",
                          help="stop after stage K (1 = base only; a number or a stage name: base, sr1, sr2)")
    sampling.add_argument("--sweep", nargs="+", metavar="AXIS=V,V,...",
                          help="render a labelled grid over one or two axes for one prompt and seed (see below)")
    _editing_arguments(parser)
    run = parser.add_argument_group("output and device")
    run.add_argument("--out", type=Path, default=Path("samples"), metavar="DIR_OR_PNG",
                     help="output directory (default: samples), or a .png path for a single image (with --grid "
                          "or --sweep: the grid itself)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace earlier outputs (number from 000, reuse names) instead of adding after them")
    run.add_argument("--grid", action="store_true",
                     help="also write grid.png: every final image with its prompt and seed written under it")
    run.add_argument("--all-stages", action="store_true",
                     help="also write every earlier stage's images, as STAGE/NNN.png in the output directory")
    run.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary line; errors only")
    run.add_argument("--device", default="auto",
                     help="auto (a GPU if there is one, else the CPU), cpu, cuda, cuda:N or mps (default auto)")
    run.add_argument("--dtype", choices=PRECISIONS, default="float32",
                     help="precision of the U-Nets (default float32; bfloat16 or float16 halve their memory, e.g. "
                          "on a GPU; on a CPU bfloat16 runs near float32's speed, the SR stages about 2x faster "
                          "on one with AMX, and float16 is slow)")
    run.add_argument("--lora", action="append", default=[], metavar="DIR[:SCALE]",
                     help="LoRA adapters (imagen-train --lora) to add, at SCALE (default 1); repeat for several")
    run.add_argument("--lora-merge", action="store_true", help="merge the --lora adapters into the weights")
    run.add_argument("--compile", nargs="*", metavar="STAGE",
                     help="torch.compile these stages' U-Nets first (every stage when none is named), weights frozen "
                          "in: a cold start of about a minute per stage on a CPU, cached for later runs; on 2 CPU "
                          "cores only the 64 px base runs faster compiled (--compile base)")
    run.add_argument("--max-batch-size", type=int, metavar="N",
                     help="images sampled together at most (less memory; the same images, to within one level)")
    run.add_argument("--no-memory-check", action="store_true",
                     help="sample even when the images of the run need more memory than is available")
    return parser


def _editing_arguments(parser: argparse.ArgumentParser) -> None:
    edit = parser.add_argument_group("editing a given image (see 'editing' below)")
    edit.add_argument("--upscale", type=Path, metavar="IMG",
                      help="upscaler: run the super-resolution stages alone on IMG, which stands for the base stage's "
                           "output (resized to the first SR stage's input, with a note, when it has another size); "
                           "the prompt describes the image")
    edit.add_argument("--init-image", type=Path, metavar="IMG",
                      help="start from this image: image-to-image variations, or with --mask / --outpaint the image "
                           "to inpaint / extend")
    edit.add_argument("--strength", type=float, nargs="+", metavar="S",
                      help="noise level in [0, 1] the image starts from, per stage: 0 returns it, 1 ignores it "
                           f"(default {IMG2IMG_STRENGTH}; 1 with --mask or --outpaint)")
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


def read_prompts(args: argparse.Namespace) -> list[str]:
    """The prompts of --prompt and --prompts-file (at most MAX_PROMPTS_FILE bytes, a regular UTF-8 file), each cut
    to MAX_PROMPT_CHARS characters with a note."""
    import sys

    from ..io import read_bounded

    prompts = list(args.prompt)
    if args.prompts_file is not None:
        flag = f"--prompts-file {str(args.prompts_file)!r}"
        try:
            data = read_bounded(args.prompts_file, MAX_PROMPTS_FILE + 1)
            if len(data) > MAX_PROMPTS_FILE:
                raise UsageError(f"{flag} is over {MAX_PROMPTS_FILE // 2**20} MB: split it into several runs")
            lines = data.decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise UsageError(f"cannot read {flag}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise UsageError(f"cannot read {flag}: {e.strerror or e}") from None
        prompts += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError("no prompt: give --prompt TEXT (repeatable) or --prompts-file FILE")
    for number, prompt in enumerate(prompts, start=1):
        if not prompt.strip():
            raise UsageError(f"prompt {number} is empty")
        if len(prompt.strip()) > MAX_PROMPT_CHARS and not args.quiet:
            print(f"{PROG}: note: prompt {number} is {len(prompt.strip()):,} characters; cut to {MAX_PROMPT_CHARS} "
                  "(the text encoder reads far fewer)", file=sys.stderr)
    return [p.strip()[:MAX_PROMPT_CHARS] for p in prompts]


def read_seed(value: str) -> int:
    """--seed: an integer, or 'random' (a fresh one)."""
    if value.strip().lower() == "random":
        import secrets

        return secrets.randbelow(2**31 - 1)
    try:
        seed = int(value)
    except ValueError:
        raise UsageError(f"--seed must be an integer or 'random', got {value!r}") from None
    check_seed(seed, "--seed")
    return seed


def check_seed(seed: int, flag: str) -> None:
    """UsageError, after `flag`, unless `seed` is in the range the pipeline takes (imagen.noise.check_seed)."""
    from ..noise import check_seed as check

    try:
        check(seed, flag)
    except ValueError as e:
        raise UsageError(str(e)) from None


def read_loras(args: argparse.Namespace) -> list[tuple[Path, float, str]]:
    """--lora DIR[:SCALE] items, checked to name adapter directories, as (directory, scale, adapter name): the
    directory's name as a valid module name, made unique with a suffix (lora, lora-2)."""
    loras: list[tuple[Path, float, str]] = []
    for item in args.lora:
        path, scale = _lora_item(item)
        if not (path / "lora.json").is_file():
            raise UsageError(f"--lora {item!r}: {path} holds no lora.json (a directory written by imagen-train --lora)")
        base = path.resolve().name.replace(".", "_") or "lora"  # peft's module names take no '.'
        taken = {name for _, _, name in loras}
        name, k = base, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        loras.append((path, scale, name))
    return loras


def _lora_item(item: str) -> tuple[Path, float]:
    """DIR[:SCALE] -> (DIR, SCALE (default 1)), SCALE finite. A ':' not followed by a number is part of DIR,
    unless what comes before it is a directory (then the scale is the mistake)."""
    path, sep, scale = item.rpartition(":")
    if not sep:
        return Path(item), 1.0
    try:
        value = float(scale)
    except ValueError:
        if not Path(path).is_dir() or Path(item).is_dir():
            return Path(item), 1.0
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"--lora {item}: {scale!r} is not a scale; give DIR or DIR:SCALE, e.g. DIR:0.75")
    return Path(path), value


def stop_at_stage(args: argparse.Namespace) -> int | str | None:
    stop = args.stop_at_stage
    return int(stop) if stop is not None and stop.isdigit() else stop


def percentiles(values: list[float] | None) -> list[float] | None:
    """Accept 99.5 as well as 0.995."""
    return None if values is None else [v / 100 if 1 < v <= 100 else v for v in values]


def sampling_values(args: argparse.Namespace) -> dict[str, Any]:
    """The per-stage sampling values given, as `Imagen.sampling_options` takes them."""
    return {"guidance_scale": args.guidance_scale, "num_inference_steps": args.steps, "sampler": args.sampler,
            "thresholding": args.thresholding, "dynamic_percentile": percentiles(args.dynamic_percentile),
            "aug_level": args.aug_level, "time_grid": args.time_grid, "stop_at_stage": stop_at_stage(args)}


LIBRARY_FLAGS = {"guidance_scale": "--guidance-scale", "num_inference_steps": "--steps", "sampler": "--sampler",
                 "thresholding": "--thresholding", "dynamic_percentile": "--dynamic-percentile",
                 "time_grid": "--time-grid", "aug_level": "--aug-level", "stop_at_stage": "--stop-at-stage"}


def in_flags(error: ValueError) -> UsageError:
    """`Imagen.sampling_options`'s error about one of `sampling_values` as the command line says it: the flag for
    the argument it names first, without the {stage: value} mapping only the library takes."""
    message = str(error).replace("one value, one per stage run, or a {stage: value} mapping",
                                 "one value or one per stage run")
    return UsageError(re.sub(r"^\w+", lambda m: LIBRARY_FLAGS.get(m.group(0), m.group(0)), message))


def check_sampling_values(args: argparse.Namespace) -> None:
    """The per-stage numbers given, each checked before the model loads (their count needs the model)."""
    for flag, values, field in (("--guidance-scale", args.guidance_scale, "guidance_scale"),
                                ("--steps", args.steps, "num_steps"),
                                ("--dynamic-percentile", args.dynamic_percentile, "dynamic_percentile"),
                                ("--aug-level", args.aug_level, "aug_level")):
        for value in values or []:
            check_option(field, value, flag)


def check_option(field: str, value: Any, flag: str) -> None:
    """UsageError, after `flag`, unless `value` is valid for `SamplingOptions.<field>` (a percent for
    dynamic_percentile taken as a fraction)."""
    from ..options import SamplingOptions

    value = percentiles([value])[0] if field == "dynamic_percentile" else value
    try:
        SamplingOptions(**{field: value}).checked()
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None
