"""Caption compliance of a trained cascade on held-out shapes prompts, judged on the pixels (`imagen.eval`).

    python bench/quality.py --model runs/shapes [--quick] [--seeds N] [--sections default,steps,guidance,sr,progress]
                                                [--plot sweeps.png]

Sections:
  default   every stage with its default sampling (DPM-Solver++, guidance 5, dynamic thresholding), one- and
            two-object prompts (the SR stages on fewer: --sr-prompts), plus SR sharpness against bicubic
            upsampling of the stage's input
  steps     base compliance vs number of steps per sampler (DDPM 250 as the reference)
  guidance  base compliance vs guidance scale, static vs dynamic thresholding (the paper's figure 4 analog),
            and vs the dynamic-thresholding percentile at the default guidance scale
  sr        SR aug level x guidance sweep (first SR stage)
  progress  base compliance vs training time, over the kept checkpoints of a run (--run RUN_DIR)
Prints one JSON object as its last line: {"base64": {attribute: accuracy on one-object prompts, ...,
"two_objects": {...}}, "base_of_sr64": the same on the SR prompts, "sr256": {..., "sharpness_vs_bicubic", "flat_grain",
"color_drift"},
"sr1024": ..., "sweeps": ...}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import atomic_save, emit, machine  # noqa: E402
from imagen import Imagen  # noqa: E402
from imagen.eval import compare_to_bicubic  # noqa: E402
from imagen.eval.model import held_out_prompts, model_compliance  # noqa: E402

ATTRIBUTES = ("background", "object_color", "position", "shape", "size", "overall", "object_found")


def _scores(summary: dict, group: str = "one_object") -> dict:
    return {k: summary[group][k] for k in (*ATTRIBUTES, "outline_error") if summary[group].get(k) is not None}


def _sr_fidelity(compared: list[dict]) -> dict:
    """Means over images of `compare_to_bicubic`: sharpness ratio, grain on flat regions, colour drift."""
    def mean(key: str) -> float | None:
        values = [c[key] for c in compared if c[key] is not None]
        return round(sum(values) / len(values), 3) if values else None

    return {"sharpness_vs_bicubic": mean("ratio"), "flat_grain": mean("flat_grain"), "color_drift": mean("color_drift")}


def default_section(pipe: Imagen, count: int, sr_count: int, seeds: int = 1) -> dict:
    """The base stage on `count` one- and as many two-object prompts, drawn with seeds 0 to `seeds` - 1 and
    judged pooled; the SR stages (costly at 1024 px) on the first `sr_count` one-object and a third as many
    two-object prompts, seed 0, with the base outputs they upsample judged beside them."""
    from imagen.eval import evaluate

    one, two = held_out_prompts(count), held_out_prompts(count, objects=2)
    started = time.perf_counter()
    base = torch.cat([pipe.generate(one + two, seed=seed, stop_at_stage="base", max_batch_size=16,
                                    progress=False)["base"] for seed in range(seeds)])
    result = {"prompts": {"one_object": len(one), "two_objects": len(two)}, "seeds": seeds,
              "base_seconds": round(time.perf_counter() - started, 1)}
    summary = evaluate(base, (one + two) * seeds)
    result[f"base{base.shape[-1]}"] = {**_scores(summary), "two_objects": _scores(summary, "two_objects")}
    if len(pipe.stages) == 1:
        return result
    sr_one, sr_two = one[:sr_count], two[:max(1, sr_count // 3)]
    prompts = sr_one + sr_two
    started = time.perf_counter()
    outputs = pipe.generate(prompts, seed=0, max_batch_size=4, progress=False)
    result["sr_prompts"] = {"one_object": len(sr_one), "two_objects": len(sr_two)}
    result["cascade_seconds"] = round(time.perf_counter() - started, 1)
    names = list(outputs)
    for i, name in enumerate(names):
        images = outputs[name]
        summary = evaluate(images, prompts)
        key = ("sr" if i else "base_of_sr") + str(images.shape[-1])
        result[key] = {**_scores(summary), "two_objects": _scores(summary, "two_objects")}
        if i:
            compared = [compare_to_bicubic(hi, lo) for hi, lo in zip(images, outputs[names[i - 1]], strict=True)]
            result[key].update(_sr_fidelity(compared))
    return result


def steps_section(pipe: Imagen, count: int, quick: bool) -> list[dict]:
    prompts = held_out_prompts(count)
    grid = [("dpm++", 10), ("dpm++", 25), ("ddim", 25), ("ddim", 50), ("ddpm", 250)]
    if not quick:
        grid = [("dpm++", 5), *grid[:2], ("dpm++", 50), ("ddim", 10), *grid[2:], ("ddpm", 50), ("ddpm", 100)]
    rows = []
    for sampler, steps in grid:
        summary = model_compliance(pipe, prompts, stop_at_stage="base", sampler=sampler,
                                   num_inference_steps=steps)["base"]
        rows.append({"sampler": sampler, "steps": steps, **_scores(summary)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def guidance_section(pipe: Imagen, count: int, quick: bool) -> list[dict]:
    prompts = held_out_prompts(count)
    scales = [1.0, 3.0, 5.0, 8.0] if quick else [1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0]
    rows = []
    for thresholding in ("static", "dynamic"):
        for scale in scales:
            summary = model_compliance(pipe, prompts, stop_at_stage="base", guidance_scale=scale,
                                       thresholding=thresholding)["base"]
            rows.append({"guidance": scale, "thresholding": thresholding, **_scores(summary)})
            print(rows[-1], file=sys.stderr, flush=True)
    for percentile in ([0.9, 0.99] if quick else [0.8, 0.9, 0.95, 0.99, 0.999]):
        summary = model_compliance(pipe, prompts, stop_at_stage="base", thresholding="dynamic",
                                   dynamic_percentile=percentile)["base"]
        rows.append({"guidance": pipe.stages["base"].config.sampler.guidance_scale, "thresholding": "dynamic",
                     "percentile": percentile, **_scores(summary)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def sr_section(pipe: Imagen, count: int, quick: bool) -> list[dict]:
    names = list(pipe.stages)
    if len(names) < 2:
        return []
    prompts = held_out_prompts(count)
    rows = []
    for aug in ([0.0, 0.2] if quick else [0.0, 0.1, 0.2, 0.3]):
        for scale in ([1.0, 5.0] if quick else [1.0, 3.0, 5.0, 8.0]):
            summary = model_compliance(pipe, prompts, stop_at_stage=2, aug_level=aug,
                                       guidance_scale=[None, scale])[names[1]]
            rows.append({"aug_level": aug, "guidance": scale, **_scores(summary)})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def progress_section(run_dir: Path, count: int) -> list[dict]:
    """Base compliance against training time: every kept checkpoint of the run's base stage, its EMA weights
    exported and sampled with the default settings."""
    import json
    import tempfile

    from configs import load_config
    from trainers.checkpoints import list_checkpoints
    from trainers.run import RUN_CONFIG, export_checkpoint

    config = load_config(run_dir / RUN_CONFIG)
    elapsed = {}
    for line in (run_dir / "base" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line) if line.strip().startswith("{") else {}
        if "elapsed_s" in record:
            elapsed[record["step"]] = record["elapsed_s"]
    prompts = held_out_prompts(count)
    rows = []
    for path in list_checkpoints(run_dir / "base" / "checkpoints"):
        step = int(path.name.split("-")[1])
        with tempfile.TemporaryDirectory() as tmp:
            export_checkpoint(run_dir, config, ["base"], step=step, output=Path(tmp))
            pipe = Imagen.from_pretrained(tmp)
            summary = model_compliance(pipe, prompts, stop_at_stage="base")["base"]
        known = [s for s in elapsed if s <= step]
        minutes = elapsed[max(known)] / 60 if known else None
        rows.append({"step": step, "train_minutes": None if minutes is None else round(minutes, 1),
                     **_scores(summary)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained model: shipped name, directory or run directory")
    parser.add_argument("--run", type=Path, help="for the 'progress' section: the training run directory")
    parser.add_argument("--quick", action="store_true", help="few prompts and settings (a smoke run)")
    parser.add_argument("--sections", default="default", help="comma-separated: default,steps,guidance,sr,progress")
    parser.add_argument("--prompts", type=int, help="held-out one-object prompts per setting, and as many two-object "
                                                    "ones in the default section (default 48, quick 8)")
    parser.add_argument("--seeds", type=int, default=1, help="the default section's base images per prompt (seeds 0 "
                                                             "to N - 1, judged pooled; one figure on 48 prompts "
                                                             "moves by several points with the noise drawn)")
    parser.add_argument("--plot", type=Path, help="also draw the sweeps as line charts into this PNG")
    parser.add_argument("--sr-prompts", type=int, help="one-object prompts drawn through the SR stages (default 8, "
                                                       "quick 2)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1 (got {args.seeds})")
    torch.manual_seed(0)
    pipe = Imagen.from_pretrained(args.model)
    count = args.prompts or (8 if args.quick else 48)
    result: dict = {"model": str(args.model), "machine": machine()}
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if "default" in sections:
        result.update(default_section(pipe, count, args.sr_prompts or (2 if args.quick else 8), args.seeds))
    sweeps = {}
    if "steps" in sections:
        sweeps["steps"] = steps_section(pipe, count, args.quick)
    if "guidance" in sections:
        sweeps["guidance"] = guidance_section(pipe, count, args.quick)
    if "sr" in sections:
        sweeps["sr"] = sr_section(pipe, count, args.quick)
    if "progress" in sections:
        sweeps["progress"] = progress_section(args.run or Path(args.model), count)
    if sweeps:
        result["sweeps"] = sweeps
    if args.plot and sweeps:
        from bench.plot import plot_sweeps

        chart = plot_sweeps(sweeps)
        atomic_save(args.plot, lambda handle: chart.save(handle, format="PNG"))
    emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
