"""`imagen-sample`: text -> images with a saved cascade, from the command line.

    imagen-sample --model runs/tiny --prompt "a large red circle at the center on a blue background"
    imagen-sample --model shapes --prompts-file prompts.txt --num-images 4 --guidance-scale 5 1 1 --grid
    imagen-sample --model shapes --prompt "..." --stop-at-stage 2 --sweep aug-level=0,0.1,0.2,0.3 \\
                  guidance-scale@sr1=1,3,5,8
    imagen-sample --model shapes --prompt "..." --init-image in.png --mask mask.png      # inpainting
    imagen-sample --model shapes --prompt "..." --upscale small.png                     # the SR stages alone
    imagen-sample --model shapes --prompt "..." --interpolate-to "..." --frames 8 --gif  # interpolation

Everything that can be checked before the model loads is checked first (flags, prompts, image files, the
output path), with one line on stderr and exit status 2; then the model loads, every stage's options are
resolved once, and the chosen mode (imagen.cli.modes) samples and writes. Every PNG carries the text chunks
`prompt` (read by imagen-eval) and `settings` (JSON: model, seed and every stage's resolved options).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .arguments import PROG, build_parser, check_sampling_values, read_loras, read_prompts, read_seed
from .common import run_main
from .modes import Session, select_mode
from .output import Output


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    prompts = read_prompts(args)
    seed = read_seed(args.seed)
    loras = read_loras(args)
    check_sampling_values(args)
    mode = select_mode(args, prompts)
    output = Output(args.out, overwrite=args.overwrite, suffixes=mode.suffixes(args))
    output.check()
    from ..pipeline import Imagen, resolve_device

    pipe = Imagen.from_pretrained(args.model, device=resolve_device(args.device), dtype=args.dtype)
    for path, scale, name in loras:
        pipe.load_lora(path, scale=scale, merge=args.lora_merge, name=name)
    session = Session(args, prompts, seed, pipe, mode.options(pipe, args), output)
    if args.compile is not None:
        pipe.compile(args.compile or None)
        paying = [name for name in pipe.compiled if name in session.options]  # a stage outside the run never compiles
        if paying and not args.quiet:  # said before the progress bar it stalls
            print(f"{PROG}: compiling {', '.join(paying)}: each stage's first step pays it (about a minute on "
                  "a CPU, seconds once torch's cache holds it)", file=sys.stderr)
    if not args.no_memory_check:
        check_memory(session)
    if args.seed.strip().lower() == "random" and not args.quiet:
        print(f"{PROG}: seed {seed}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if args.quiet else "once", UserWarning)
        warnings.showwarning = _note
        mode.run(session)
    if not args.quiet:
        print(output.summary(PROG))
    return 0


def check_memory(session: Session) -> None:
    """Refuse, before sampling, a run whose images (every stage run is held until written) need more memory
    than is available."""
    from ..io import available_memory
    from .common import UsageError

    count = len(session.prompts) * (session.args.num_images if not session.args.sweep else 1)
    per_image = sum(4 * 3 * session.pipe.stages[name].resolution ** 2 for name in session.options)
    needed, available = count * per_image, available_memory()
    if available is not None and needed > 0.8 * available:
        raise UsageError(f"{count:,} images need about {needed / 2**30:,.1f} GiB to hold, more than the "
                         f"{available / 2**30:,.1f} GiB available: make fewer images per run (or add "
                         "--no-memory-check)")


def _note(message, *_) -> None:
    """A library warning (an image resized, a prompt the text encoder does not know) as one line on stderr."""
    print(f"{PROG}: note: {' '.join(str(message).split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
