"""`imagen-eval` (also `python -m imagen.eval`): caption compliance and sharpness of a set of shapes images.

    imagen-eval samples/                       # PNGs with a "prompt" text chunk, or same-name .txt captions
    imagen-eval manifest.jsonl --json eval.json
    imagen-eval samples_256/ --low-res samples_64/   # SR outputs: also sharpness against bicubic of the input

Prints a table of accuracies (per attribute and overall, for one- and two-object captions, per resolution)
and writes every number, and the judgement of every image, as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image

from imagen.cli.common import Parser, UsageError, run_main
from imagen.eval.compliance import ATTRIBUTES, Judgement, analyze, summarize
from imagen.eval.sharpness import compare_to_bicubic, sharpness
from imagen.eval.sources import Item, SourceError, collect
from imagen.io import atomic_write, check_regular_file, check_writable
from imagen.shapes import ALL_SHAPES, SHAPES, parse_caption

PROG = "imagen-eval"
COLUMNS = (*ATTRIBUTES, "overall", "object_found")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Caption compliance of shapes images, judged on the pixels (no learned classifier): "
                    "background colour, object colour, position, shape and size, per attribute and overall, "
                    "for one- and two-object captions; plus a sharpness measure for super-resolution outputs.",
        epilog="Images whose caption is missing or is not a shapes caption are skipped and counted. "
               "Exit status: 0 on success, 2 on a usage error (bad path, no images, no shapes captions).")
    parser.add_argument("source", help="a directory of images (.png/.jpg/.jpeg/.webp) whose captions are the PNG "
                                       "text chunk 'prompt' or a same-name .txt file, or a JSONL manifest with "
                                       'one {"image": path, "caption": text} a line (paths relative to it)')
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="also write all results (summaries, per-resolution tables, sharpness, every "
                             "image's judgement) to FILE as JSON")
    parser.add_argument("--low-res", metavar="DIR", type=Path,
                        help="directory holding the low-res input of each image under the same relative name "
                             "(else the same file name): also compare each image's sharpness with bicubic "
                             "upsampling of its input")
    parser.add_argument("--shapes", type=_shape_list, default=SHAPES, metavar="LIST",
                        help=f"comma-separated shapes the judge knows (default {','.join(SHAPES)}, the training "
                             f"stream's; add a taught shape, e.g. {','.join(ALL_SHAPES)}); every object is "
                             "judged among these whatever its caption asks")
    parser.add_argument("--recursive", action="store_true", help="also look for images in subdirectories")
    parser.add_argument("--per-image", action="store_true",
                        help="print one line per judged image: which attributes it gets right")
    return parser


def _shape_list(text: str) -> tuple[str, ...]:
    shapes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in shapes if s not in ALL_SHAPES]
    if unknown or not shapes:
        raise argparse.ArgumentTypeError(f"unknown shape {', '.join(unknown) or '(none given)'}: choose among "
                                         f"{', '.join(ALL_SHAPES)}")
    return shapes


def _load_path(path: Path) -> Image.Image | None:
    """The image as RGB, or None when it cannot be used: not a regular file, unreadable, or a decompression
    bomb (PIL's pixel limit)."""
    try:
        check_regular_file(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None


def _judge_items(items: list[Item], low_res: Path | None,
                 shapes: tuple[str, ...]) -> tuple[list[dict], list[Judgement], Counter]:
    """Judge every usable item; returns per-image records, their judgements, and skip counts by reason."""
    records, judgements, skipped = [], [], Counter()
    for item in items:
        scene = parse_caption(item.caption) if item.caption else None
        if item.caption is None or scene is None:  # a PNG whose caption chunk cannot be read may be damaged
            reason = "not_shapes_caption" if item.caption else "unreadable" if _load_path(item.path) is None \
                else "no_caption"
            skipped[reason] += 1
            continue
        image = _load_path(item.path)
        if image is None:
            skipped["unreadable"] += 1
            continue
        judgement = analyze(image, scene, shapes)
        record = {"image": item.name, "caption": item.caption, "resolution": image.width,
                  "judgement": judgement.as_dict(), "found": [v.predicted for v in judgement.objects],
                  "sharpness": sharpness(image)}
        if low_res is not None:
            candidates = (low_res / item.name, low_res / Path(item.name).name)
            low = next((image for image in map(_load_path, candidates) if image is not None), None)
            if low is not None:
                record["vs_bicubic"] = compare_to_bicubic(image, low)
        records.append(record)
        judgements.append(judgement)
    return records, judgements, skipped


def _sharpness_summary(records: list[dict]) -> dict:
    by_resolution: dict[int, list[float]] = defaultdict(list)
    for record in records:
        by_resolution[record["resolution"]].append(record["sharpness"])
    result: dict = {"by_resolution": {str(r): {"count": len(v), "mean": statistics.fmean(v),
                                               "median": statistics.median(v)}
                                      for r, v in sorted(by_resolution.items())}}
    compared = [r["vs_bicubic"] for r in records if "vs_bicubic" in r]
    if compared:
        result["vs_bicubic"] = {
            "count": len(compared), "sr_mean": statistics.fmean(c["sr"] for c in compared),
            "bicubic_mean": statistics.fmean(c["bicubic"] for c in compared),
            "ratio_median": statistics.median(c["ratio"] for c in compared),
            "sharper_fraction": sum(c["sr"] > c["bicubic"] for c in compared) / len(compared)}
        for key in ("color_drift", "flat_grain"):
            values = [c[key] for c in compared if c[key] is not None]
            result["vs_bicubic"][f"{key}_mean"] = statistics.fmean(values) if values else None
    return result


def _levels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} levels"


def _table(title: str, summary: dict) -> list[str]:
    lines = [title, f"  {'prompts':<12}{'n':>6}" + "".join(f"{c:>14}" for c in COLUMNS)]
    for key, label in (("one_object", "one object"), ("two_objects", "two objects"), ("all", "all")):
        group = summary[key]
        if group["count"]:
            lines.append(f"  {label:<12}{group['count']:>6}" + "".join(f"{100 * group[c]:>13.1f}%" for c in COLUMNS))
    return lines


def _write_json(path: Path, payload: dict) -> None:
    atomic_write(path, json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation CLI; returns the exit status (0 ok, 2 user error)."""
    return run_main(build_parser(), _evaluate, argv, errors=(UsageError, SourceError))


def _evaluate(args: argparse.Namespace) -> int:
    if args.low_res is not None and not args.low_res.is_dir():
        raise UsageError(f"--low-res: not a directory: {args.low_res}")
    if args.json is not None:
        try:
            check_writable(args.json)
        except OSError as e:
            raise UsageError(f"--json {args.json}: cannot write the report there ({e.strerror or e})") from None
    items = collect(args.source, recursive=args.recursive)
    records, judgements, skipped = _judge_items(items, args.low_res, args.shapes)
    if not judgements:
        reasons = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in skipped.items())
        raise UsageError(f"no image with a shapes caption among {len(items)} in {args.source} ({reasons})")
    by_resolution: dict[int, list[Judgement]] = defaultdict(list)
    for record, judgement in zip(records, judgements, strict=True):
        by_resolution[record["resolution"]].append(judgement)
    not_judged = len(items) - len(judgements)
    result = {**summarize(judgements, not_judged), "skipped_by_reason": dict(skipped),
              "by_resolution": {str(r): summarize(js) for r, js in sorted(by_resolution.items())},
              "sharpness": _sharpness_summary(records), "images": records}
    skip_note = f", {not_judged} skipped: " + ", ".join(
        f"{n} {k.replace('_', ' ')}" for k, n in skipped.items()) if not_judged else ""
    print(f"{PROG}: {len(judgements)} image{'s' * (len(judgements) != 1)} judged in {args.source}{skip_note}")
    if args.per_image:
        for record in records:
            wrong = [k for k in ATTRIBUTES if not record["judgement"][k]]
            print(f"  {record['image']}: {'ok' if not wrong else 'wrong ' + ', '.join(wrong)}  ({record['caption']})")
    for resolution, summary in result["by_resolution"].items():
        print("\n".join(_table(f"caption compliance at {resolution} px", summary)))
    for resolution, values in result["sharpness"]["by_resolution"].items():
        print(f"sharpness (variance of the Laplacian) at {resolution} px: mean {values['mean']:.3g}, "
              f"median {values['median']:.3g}")
    if "vs_bicubic" in result["sharpness"]:
        cmp = result["sharpness"]["vs_bicubic"]
        print(f"vs bicubic upsampling of --low-res: {cmp['sr_mean']:.3g} vs {cmp['bicubic_mean']:.3g} "
              f"(median ratio {cmp['ratio_median']:.2f}, sharper in {100 * cmp['sharper_fraction']:.0f}% "
              f"of {cmp['count']} images); colour drift {_levels(cmp['color_drift_mean'])}, grain on flat regions "
              f"{_levels(cmp['flat_grain_mean'])}")
    missing = sum("vs_bicubic" not in r for r in records) if args.low_res is not None else 0
    if missing:
        print(f"note: no readable low-res input in {args.low_res} for {missing} images")
    if args.json is not None:
        _write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0
