"""Teach the shipped `shapes` cascade a shape it has never seen (the star), with full fine-tuning and with LoRA,
with and without prior preservation, and judge what it learnt and what it kept.

    python bench/new_shape.py [--runs runs/new-shape] [--minutes 12] [--variants full,lora,full-noprior,...]
                              [--set KEY=VALUE ...]

1. Tuning data: 40 renders of the star (`imagen.shapes.NEW_SHAPES`) at 64 px, in TUNE_COLORS at TUNE_POSITIONS,
   both sizes (`--small-share` of them small, default half), random backgrounds, as PNG + .txt captions
   (`RUNS/data`); with `--loss-masks`, each with its loss mask (`NN-masklabel.png`: the star's outline grown by
   2 px, so the notches between its points count too), which weighs the star's pixels 1 against
   `data.unmasked_weight` for the rest.
2. Each variant tunes the base stage from `shapes` (`imagen-train --init-from shapes --stage base --data ...`)
   for `--minutes` (or `--steps`, whichever comes first): `full` (every weight), `lora` (rank `--rank` adapters
   on the attention projections and the 3x3 convolutions), `lora-text` (on cross-attention's text keys and
   values only) or `lora-local` (on the two finest levels' residual blocks, their resampling and the output
   convolution), prior preservation on (the default for a small data set: 25% of the examples from the shapes
   stream) or off (`-noprior`).
3. Judged at 64 px (default sampling, the same seed for every model): held-out star prompts, every one in a
   colour and a position absent from the tuning data, by the judge taught the star; and the shipped model's
   own held-out one-object prompts by the default judge, against the shipped model's score on them.

With `--phrase "sks triangle"`: the captions and the sampled prompts name the star with those words instead
(DreamBooth's recipe: a rare identifier before a class noun the model knows); the judge still reads "star".
With `--generalisation`: where RUNS/full draws the star (tuning prompts; new colours, new positions apart).
With `--cost`: the sampling time of one image with RUNS/lora's adapters unmerged and merged, against none.
With `--adapter-scales 1,0.75,0.5`: the adapters of each LoRA run among `--variants` judged at each sampling scale
(what is learnt against what is kept).
With `--seeds 3`: every model judged on its prompts sampled at seeds 0, 1 and 2, pooled (one seed's 32 star
prompts move the star-drawn share by 6-12 points between seeds).
With `--picture PNG`: the README's before/after grid instead (the shipped model and the `full` and `lora`
runs of RUNS on four held-out star prompts, one tuning prompt and one original prompt, at 256 px).

A variant whose run already holds its result is not tuned again (delete RUNS/VARIANT to redo it). Prints one
JSON object as its last line: {"data": {...}, "shipped": {...}, "variants": {NAME: {"tune_minutes",
"steps", "adapter_mb", "star": {...}, "original": {...}, "kept": {...}}}}.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import random
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, emit, machine, median_time, spawn_json  # noqa: E402
from imagen.io import atomic_write  # noqa: E402
from imagen.shapes import (  # noqa: E402
    ALL_SHAPES,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    jittered,
    render,
)
from trainers.data.sources import MASK_SUFFIX  # noqa: E402

SHAPE = "star"
TUNE_COLORS = ("red", "yellow", "blue", "white")
TUNE_POSITIONS = ("top left", "top right", "center", "bottom left", "bottom right")
HELD_OUT_COLORS = tuple(c for c in COLORS if c not in TUNE_COLORS)
ATTRIBUTES = ("background", "object_color", "position", "shape", "size", "overall")
FULL = ["--set", "base.train.lr=5e-4"]  # half the pretraining rate: every weight moves
LORA = ["--lora", "{rank}", "--lora-conv", "--set", "base.train.lr=2e-3"]  # adapters start at zero: a higher rate
# adapters on cross-attention's text keys and values only (Custom Diffusion): what "star" means, not where it goes
LORA_TEXT = ["--lora", "{rank}", "--lora-target", "text", "--set", "base.train.lr=2e-3"]
# adapters on the two finest levels' residual blocks and resampling and the output convolution only: the star's
# outline, drawn wherever the untouched coarser levels put the object
LORA_LOCAL = ["--lora", "{rank}", "--lora-target", "local", "--set", "base.train.lr=2e-3"]
NO_PRIOR = ["--set", "data.prior_share=0"]
VARIANTS = {"full": FULL, "lora": LORA, "lora-text": LORA_TEXT, "lora-local": LORA_LOCAL,
            "full-noprior": FULL + NO_PRIOR, "lora-noprior": LORA + NO_PRIOR}
# shared by every variant: small batches (more updates in the budget: 1,164 steps in 5 min at batch 8 drew
# stars for the tuning prompts where 382 at batch 32 drew blobs), a constant rate after a short warm-up
TUNING = ["--set", "base.train.batch_size=8", "--set", "base.train.lr_schedule=constant",
          "--set", "base.train.warmup_steps=20", "--set", "base.train.checkpoint_every=500"]


def _scene(rng: random.Random, color: str, size: str, position: str) -> Scene:
    background = rng.choice([c for c in COLORS if c != color])
    return Scene((ShapeObject(size, color, SHAPE, position),), background)


def held_out_positions(positions: tuple[str, ...]) -> tuple[str, ...]:
    """The positions a tuning set at `positions` never shows."""
    return tuple(p for p in POSITIONS if p not in positions)


def tuning_sizes(count: int, small_share: float) -> list[str]:
    """The sizes of `count` tuning stars, `small_share` of them small, the large ones evenly spaced through the
    list (at 0.5 small, large, small, ...: every colour and position shown at both sizes)."""
    large = round(count * (1 - small_share))
    return ["large" if (k + 1) * large // count > k * large // count else "small" for k in range(count)]


def tuning_scenes(positions: tuple[str, ...] = TUNE_POSITIONS, jitter: float = 0.0,
                  small_share: float = 0.5) -> list[Scene]:
    """The tuning scenes: every tuning colour x position twice (40 at five positions), `small_share` of them
    small stars, backgrounds drawn at random; with `jitter`, each star moved inside its cell as
    `data.position_jitter` moves the base's shapes."""
    rng = random.Random("new-shape:tune")
    places = [(c, p) for c, p in itertools.product(TUNE_COLORS, positions) for _ in SIZES]
    sizes = tuning_sizes(len(places), small_share)
    scenes = [_scene(rng, c, s, p) for (c, p), s in zip(places, sizes, strict=True)]
    if not jitter:
        return scenes
    moves = random.Random("new-shape:jitter")  # apart from `rng`: the backgrounds stay those of the unmoved set
    return [Scene((jittered(s.objects[0], moves, jitter),), s.background) for s in scenes]


def held_out_star_prompts(count: int, positions: tuple[str, ...] = TUNE_POSITIONS) -> list[str]:
    """`count` star prompts, each in a colour and a position the tuning data (at `positions`) never shows, sizes
    alternating."""
    rng = random.Random("new-shape:held-out")
    combos = list(itertools.product(HELD_OUT_COLORS, held_out_positions(positions)))
    rng.shuffle(combos)
    sizes = list(SIZES)
    return [_scene(rng, c, sizes[i % 2], p).caption for i, (c, p) in enumerate(combos[:count])]


def phrased(caption: str, phrase: str) -> str:
    """`caption` with the star named by `phrase`."""
    return re.sub(rf"\b{SHAPE}\b", phrase, caption)


def loss_mask(scene: Scene, resolution: int) -> Image.Image:
    """White where `scene`'s objects are, grown by 2 px (the notches between a star's points are its outline
    too), black elsewhere."""
    silhouette = Scene(tuple(replace(o, color="white") for o in scene.objects), "black")
    drawn = render(silhouette, resolution).convert("L").point(lambda v: 255 if v > COLORS["black"][0] else 0)
    return drawn.filter(ImageFilter.MaxFilter(5))


def write_data(directory: Path, phrase: str, positions: tuple[str, ...], jitter: float = 0.0,
               small_share: float = 0.5, masks: bool = False) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    scenes = tuning_scenes(positions, jitter, small_share)
    for i, scene in enumerate(scenes):
        render(scene, 64).save(directory / f"{i:02d}.png")
        (directory / f"{i:02d}.txt").write_text(phrased(scene.caption, phrase) + "\n")
        if masks:
            loss_mask(scene, 64).save(directory / f"{i:02d}{MASK_SUFFIX}")
    return {"images": len(scenes), "colors": TUNE_COLORS, "positions": positions,
            "held_out_colors": HELD_OUT_COLORS, "held_out_positions": held_out_positions(positions), "jitter": jitter,
            "small": sum(s.objects[0].size == "small" for s in scenes), "loss_masks": masks}


def judge_model(model: str, lora: str | None, star_prompts: list[str], original_prompts: list[str],
                phrase: str = SHAPE, scale: float = 1.0, guidance: float | None = None, seeds: int = 1) -> dict:
    """Base-stage compliance (one-object scores) of `model` (+ `lora` at `scale`) on the star and the original
    prompts, each sampled at seeds 0 .. `seeds` - 1 and pooled, and the sampling time of one seed's prompts; the
    star prompts are sampled with the star named by `phrase`; `guidance`: the base's guidance scale instead of the
    model's default."""
    import torch

    from imagen import Imagen
    from imagen.eval import analyze, summarize

    torch.manual_seed(0)
    pipe = Imagen.from_pretrained(model, device="auto")
    if lora:
        pipe.load_lora(lora, scale=scale)
    options = {} if guidance is None else {"guidance_scale": guidance}
    result = {}
    for name, prompts, shapes in (("star", star_prompts, ALL_SHAPES), ("original", original_prompts, SHAPES)):
        sampled = [phrased(p, phrase) for p in prompts] if name == "star" else prompts
        judgements, seconds = [], 0.0
        for seed in range(seeds):
            started = time.perf_counter()
            images = pipe.generate(sampled, seed=seed, max_batch_size=16, stop_at_stage="base", progress=False,
                                   **options)["base"]
            seconds += time.perf_counter() - started
            judgements += [analyze(image, prompt, shapes) for image, prompt in zip(images.cpu(), prompts, strict=True)]
        summary = summarize(judgements)["one_object"]
        result[name] = {k: round(summary[k], 4) for k in ATTRIBUTES}
        result[f"{name}_sample_s"] = round(seconds / seeds, 2)
        if name == "star":
            result["star_drawn_by_size"] = drawn_by_size(judgements)
    return result


def drawn_by_size(judgements: list) -> dict[str, float]:
    """Per asked size, the share of one-object `judgements` whose object has the shape its caption asks."""
    from imagen.eval import summarize

    sizes = dict.fromkeys(j.scene.objects[0].size for j in judgements)
    return {size: round(summarize([j for j in judgements if j.scene.objects[0].size == size])["one_object"]["shape"], 4)
            for size in sizes}


def _judge_in_process(args: argparse.Namespace) -> None:
    star = held_out_star_prompts(args.star_prompts, args.tune_positions)
    from imagen.eval.model import held_out_prompts
    emit(judge_model(args.model, args.lora, star, held_out_prompts(args.original_prompts), args.phrase,
                     guidance=args.guidance, seeds=args.seeds))


def picture(base: str, runs: Path, out: Path, positions: tuple[str, ...]) -> None:
    """Rows: the shipped model, its full fine-tune, its LoRA; columns: star prompts held out and seen, and one
    original prompt; 256 px (the tuned base, then the shipped 64 -> 256 stage), the same seed everywhere."""
    from imagen import Imagen
    from imagen.eval.model import held_out_prompts
    from imagen.grid import labelled_grid

    prompts = [*held_out_star_prompts(4, positions), tuning_scenes(positions)[5].caption, held_out_prompts(1)[0]]
    models = {Path(base).name: (base, None), "full": (str(runs / "full"), None), "LoRA": (base, str(runs / "lora"))}
    images, titles = [], []
    for title, (model, lora) in models.items():
        pipe = Imagen.from_pretrained(model)
        if lora:
            pipe.load_lora(lora)
        images += pipe(prompts, seed=0, stop_at_stage="sr1", output_type="pil", progress=False).images
        titles.append(title)
    grid = labelled_grid(images, labels=prompts * len(models), columns=len(prompts), cell=192, row_titles=titles)
    buffer = io.BytesIO()
    grid.save(buffer, "PNG", optimize=True)
    atomic_write(out, buffer.getvalue())
    print(f"wrote {out}")


def adapter_cost(base: str, lora: Path, repeats: int) -> dict:
    """Seconds (median of `repeats`) of one guided 64 px base image (25 steps), without adapters, with the
    adapters in `lora` unmerged (scale 1) and merged into the weights."""
    from imagen import Imagen

    prompt = held_out_star_prompts(1)
    result = {}
    for name, kwargs in (("none", None), ("unmerged", {"merge": False}), ("merged", {"merge": True})):
        pipe = Imagen.from_pretrained(base)
        if kwargs is not None:
            pipe.load_lora(lora, **kwargs)
        seconds, _ = median_time(lambda p=pipe: p.generate(prompt, seed=0, stop_at_stage="base", progress=False),
                                 repeats, warmup=1)
        result[f"{name}_s"] = round(seconds, 3)
    result["unmerged_over_none"] = round(result["unmerged_s"] / result["none_s"], 3)
    result["merged_over_none"] = round(result["merged_s"] / result["none_s"], 3)
    return result


def kept(original: dict, shipped: dict) -> dict:
    """Each attribute's score on the original prompts as a share of the shipped model's."""
    return {k: round(original[k] / max(shipped[k], 1e-9), 4) for k in ATTRIBUTES}


def adapter_scales(base: str, lora: Path, scales: list[float], star_prompts: list[str],
                   original_prompts: list[str], shipped: dict, guidance: float | None = None, seeds: int = 1) -> dict:
    """The adapters in `lora` judged at each sampling scale (`imagen-sample --lora DIR:SCALE`): a smaller scale
    keeps more of what the model knew and less of what the adapters taught; `kept` against `shipped` (the shipped
    model's scores on the original prompts)."""
    rows = {}
    for scale in scales:
        row = judge_model(base, str(lora), star_prompts, original_prompts, scale=scale, guidance=guidance,
                          seeds=seeds)
        row["kept"] = kept(row["original"], shipped)
        rows[str(scale)] = row
    return rows


def generalisation(run: Path, positions: tuple[str, ...]) -> dict:
    """Where the full fine-tune in `run` draws the star (64 px, shape judged with the star taught): the 40 tuning
    prompts by size, and 16 large stars in each of: a new colour at a tuning position, a tuning colour at a new
    position, both new."""
    from imagen import Imagen
    from imagen.eval import evaluate

    pipe = Imagen.from_pretrained(run)

    def shape_hits(prompts: list[str]) -> int:
        images = pipe.generate(prompts, seed=0, max_batch_size=20, stop_at_stage="base", progress=False)["base"]
        return round(evaluate(images.cpu(), prompts, ALL_SHAPES)["one_object"]["shape"] * len(prompts))

    scenes = tuning_scenes(positions)
    result = {f"tuning_{size}": f"{shape_hits([s.caption for s in scenes if s.objects[0].size == size])} of "
                                f"{sum(s.objects[0].size == size for s in scenes)}" for size in SIZES}
    rng = random.Random(1)
    new_positions = held_out_positions(positions)
    for name, colors, where in (("new_colour_tuning_position", HELD_OUT_COLORS, positions),
                                ("tuning_colour_new_position", TUNE_COLORS, new_positions),
                                ("both_new", HELD_OUT_COLORS, new_positions)):
        combos = list(itertools.product(colors, where))
        rng.shuffle(combos)
        prompts = [_scene(rng, c, "large", p).caption for c, p in combos[:16]]
        result[f"large_{name}"] = f"{shape_hits(prompts)} of {len(prompts)}"
    return result


def _tune(variant: str, base: str, runs: Path, minutes: float, steps: int | None, rank: int, threads: int,
          overrides: list[str]) -> dict:
    run = runs / variant
    extra = [a.format(rank=rank) for a in VARIANTS[variant]]
    for override in overrides:
        extra += ["--set", override]
    # a step cap always: without one the model's own max_steps (its last training run's) would end the tuning
    budget = ["--minutes", str(minutes), "--max-steps", str(steps or 10**6)]
    cmd = [sys.executable, "-m", "trainers.cli", "--init-from", base, "--stage", "base", "--data",
           str(runs / "data"), "--output", str(run), *budget, "--no-progress", *TUNING, *extra]
    started = time.perf_counter()
    spawn_json(cmd, f"tuning {variant}", threads, log=run.parent / f"{variant}.log", expect_json=False)
    return {"tune_minutes": round((time.perf_counter() - started) / 60, 2)}


def _scales(text: str) -> list[float]:
    """`--adapter-scales`: comma-separated positive numbers."""
    try:
        scales = [float(v) for v in text.split(",")]
    except ValueError:
        scales = []
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated positive scales, e.g. 1,0.75,0.5")
    return scales


def _share(text: str) -> float:
    """`--small-share`: a fraction in [0, 1]."""
    try:
        share = float(text)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give the share of small tuning stars in [0, 1], e.g. 0.75")
    return share


def _count(text: str) -> int:
    """`--seeds`: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of seeds >= 1, e.g. 3")
    return int(text)


def _positions(text: str) -> tuple[str, ...]:
    """`--tune-positions`: comma-separated shapes positions, at least one left out for the held-out prompts."""
    positions = tuple(p.strip() for p in text.split(","))
    unknown = [p for p in positions if p not in POSITIONS]
    if unknown or not positions or not held_out_positions(positions):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated positions among {', '.join(POSITIONS)}, "
                                         "leaving at least one out")
    return positions


def _steps(run: Path) -> int:
    """The steps the tuned base took (its metrics log's last step)."""
    records = map(json.loads, (run / "base" / "metrics.jsonl").read_text().splitlines())
    return max(r["step"] for r in records if "step" in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "new-shape")
    parser.add_argument("--base", default="shapes", help="the model taught the star and judged against (default the "
                                                         "shipped shapes; a model or run directory)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--minutes", type=float, default=12.0, help="tuning budget per variant (target <= 20)")
    parser.add_argument("--steps", type=int, help="also stop each variant after this many steps (the first budget "
                                                   "reached ends it)")
    parser.add_argument("--lr", type=float, help="learning rate for every variant instead of its own")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every variant's tuning, after the variant's own (repeatable; "
                             "e.g. data.prior_share=0.75)")
    parser.add_argument("--tune-positions", type=_positions, default=TUNE_POSITIONS,
                        help="comma-separated positions of the tuning stars; the others are held out (default: "
                             f"{','.join(TUNE_POSITIONS)})")
    parser.add_argument("--tune-jitter", type=float, default=0.0,
                        help="move each tuning star inside its cell by up to this fraction of the side (as "
                             "data.position_jitter does; at most 1/6)")
    parser.add_argument("--small-share", type=_share, default=0.5,
                        help="the share of the tuning stars drawn small (default 0.5: every colour and position at "
                             "both sizes)")
    parser.add_argument("--loss-masks", action="store_true",
                        help="give each tuning image a loss mask around its star (weight 1 there, "
                             "data.unmasked_weight elsewhere)")
    parser.add_argument("--star-prompts", type=int, default=32)
    parser.add_argument("--original-prompts", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phrase", default=SHAPE, help="the words naming the star in captions and prompts "
                                                        "(default star; e.g. 'sks triangle', DreamBooth's recipe)")
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--picture", type=Path, help="write the before/after grid of RUNS' full and lora runs here")
    parser.add_argument("--generalisation", action="store_true",
                        help="only judge where RUNS/full draws the star: tuning prompts, new colours, new positions")
    parser.add_argument("--cost", action="store_true", help="only time sampling with RUNS/lora's adapters unmerged "
                                                            "and merged against none (one image, 7 repeats)")
    parser.add_argument("--adapter-scales", type=_scales,
                        help="only judge the adapters of the LoRA runs among --variants at these comma-separated "
                             "sampling scales (e.g. 1,0.75,0.5)")
    parser.add_argument("--guidance", type=float, help="judge every model at this base guidance scale instead of "
                                                        "its default")
    parser.add_argument("--seeds", type=_count, default=1, help="judge every model on its prompts sampled at this "
                                                                 "many seeds, pooled (default 1: seed 0)")
    parser.add_argument("--judge", action="store_true", help=argparse.SUPPRESS)  # worker: judge one model
    parser.add_argument("--model", default="shapes", help=argparse.SUPPRESS)
    parser.add_argument("--lora", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.judge:
        _judge_in_process(args)
        return
    if args.picture:
        picture(args.base, args.runs, args.picture, args.tune_positions)
        return
    if args.generalisation:
        emit({"generalisation": generalisation(args.runs / "full", args.tune_positions),
              "machine": machine(args.threads)}, args.out)
        return
    if args.adapter_scales:
        from imagen.eval.model import held_out_prompts

        runs = [args.runs / v for v in args.variants.split(",") if (args.runs / v / "lora.json").is_file()]
        if not runs:
            raise SystemExit(f"error: no LoRA run among --variants in {args.runs}: tune one first")
        star = held_out_star_prompts(args.star_prompts, args.tune_positions)
        original = held_out_prompts(args.original_prompts)
        shipped = judge_model(args.base, None, star, original, guidance=args.guidance, seeds=args.seeds)["original"]
        rows = {run.name: adapter_scales(args.base, run, args.adapter_scales, star, original, shipped, args.guidance,
                                         args.seeds) for run in runs}
        emit({"adapter_scales": rows, "guidance": args.guidance, "seeds": args.seeds, "machine": machine(args.threads)},
             args.out)
        return
    if args.cost:
        emit({"adapter_cost": adapter_cost(args.base, args.runs / "lora", 7), "machine": machine(args.threads)},
             args.out)
        return
    overrides = ([f"base.train.lr={args.lr}"] if args.lr is not None else []) + args.overrides
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {', '.join(unknown)}; choose among {', '.join(VARIANTS)}")
    result: dict = {"machine": machine(args.threads), "guidance": args.guidance, "seeds": args.seeds,
                    "data": write_data(args.runs / "data", args.phrase, args.tune_positions, args.tune_jitter,
                                       args.small_share, args.loss_masks),
                    "star_prompts": held_out_star_prompts(args.star_prompts, args.tune_positions), "variants": {}}
    judge = [sys.executable, __file__, "--judge", "--star-prompts", str(args.star_prompts),
             "--original-prompts", str(args.original_prompts), "--phrase", args.phrase,
             "--tune-positions", ",".join(args.tune_positions), "--seeds", str(args.seeds),
             *(["--guidance", str(args.guidance)] if args.guidance is not None else [])]
    result["shipped"] = spawn_json([*judge, "--model", args.base], f"judging {args.base}", args.threads)
    for variant in args.variants.split(","):
        run = args.runs / variant
        record_path = run / "new_shape.json"
        if record_path.is_file():
            result["variants"][variant] = json.loads(record_path.read_text())
            continue
        record = _tune(variant, args.base, args.runs, args.minutes, args.steps, args.rank, args.threads, overrides)
        record["steps"] = _steps(run)
        is_lora = variant.startswith("lora")
        if is_lora:
            record["adapter_mb"] = round((run / "lora.safetensors").stat().st_size / 1e6, 3)
        model = ["--model", args.base, "--lora", str(run)] if is_lora else ["--model", str(run)]
        record.update(spawn_json([*judge, *model], f"judging {variant}", args.threads))
        record["kept"] = kept(record["original"], result["shipped"]["original"])
        atomic_write(record_path, json.dumps(record, indent=2) + "\n")
        result["variants"][variant] = record
    emit(result, args.out)


if __name__ == "__main__":
    main()
