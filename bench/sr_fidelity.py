"""Super-resolution fidelity of a cascade: do the SR stages keep what the base drew, and sharpen it?

    python bench/sr_fidelity.py --model shapes [--quick] [--scenes 8] [--prompts 12] [--sections truth,cascade,probe]

Sections:
  truth    held-out one-object scenes rendered at every stage's size; the 64 px render is given to the cascade as
           the base output (`Imagen.upscale`) and each SR output is compared with the true render of its size
           (`imagen.eval.fidelity`): PSNR overall, in the edge band and on flat regions, flat-region colour error
           and grain (RGB levels), low-res consistency, caption compliance; next to bicubic upsampling of the 64 px
           input (the floor to beat). The last SR stage is also run alone from the true render at its input size.
  cascade  the cascade's own base outputs for held-out prompts: compliance at every stage side by side, colour
           drift of each SR output against the base image and grain on its flat regions (no true render).
  steps    the first SR stage from the true 64 px renders (4 scenes) with 1, 2, 4 and 15 sampling steps, at
           guidance 1 and 3: what more steps and guidance do to PSNR, the edge band, colour error and grain.
  probe    the cause of colour drift: each SR stage's x0 prediction at high noise (t = 0.99 and log-SNR -3.7, 0,
           3.7) on a flat one-colour image, given that colour as the low-res input: the distance of its mean
           colour from the input's (RGB levels), averaged over the palette (imagen.eval.probe).
Prints one JSON object as its last line: {"truth": {STAGE: {"ours": {...}, "bicubic": {...}, "gain_db": ...}},
"cascade": {...}, "probe": {...}, "machine": {...}}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit, machine  # noqa: E402
from imagen import Imagen  # noqa: E402
from imagen.eval import compare_to_bicubic, evaluate  # noqa: E402
from imagen.eval.fidelity import compare_to_truth, lowres_consistency  # noqa: E402
from imagen.eval.model import held_out_prompts  # noqa: E402
from imagen.eval.probe import high_noise_color_error  # noqa: E402
from imagen.eval.sharpness import bicubic_upsample  # noqa: E402
from imagen.images import to_tensor  # noqa: E402
from imagen.shapes import held_out_scenes, render  # noqa: E402

JUDGED = ("background", "object_color", "position", "shape", "size")


def _mean(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    out = {}
    for key in keys:
        values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
        out[key] = round(float(np.mean(values)), 2) if values else None
    return out


def _compliance(images, prompts: list[str]) -> dict:
    summary = evaluate(images, prompts)["one_object"]
    return {k: summary[k] for k in JUDGED if summary.get(k) is not None}


def _fidelity(outputs, truths: list, lows: list, given: list) -> dict:
    """Means of `compare_to_truth` (regions from the footprints of `lows`, the cascade's 64 px inputs) for the SR
    outputs and for bicubic upsampling of `lows` (the floor to beat), the gains, and the outputs' low-res
    consistency with the images the stage was `given`."""
    ours = _mean([{**compare_to_truth(o, t, low), "lowres_psnr": lowres_consistency(o, g)}
                  for o, t, low, g in zip(outputs, truths, lows, given, strict=True)])
    side = np.asarray(truths[0]).shape[0]
    bicubic = _mean([compare_to_truth(bicubic_upsample(low, (side, side)), t, low)
                     for t, low in zip(truths, lows, strict=True)])
    gains = {f"{k}_gain_db": round(ours[k] - bicubic[k], 2) for k in ("psnr", "psnr_edges")
             if ours[k] is not None and bicubic[k] is not None}
    return {"ours": ours, "bicubic": bicubic, **gains}


def truth_section(pipe: Imagen, count: int) -> dict:
    scenes = held_out_scenes(count)
    prompts = [s.caption for s in scenes]
    names = list(pipe.stages)
    sizes = {name: pipe.stages[name].resolution for name in names}
    renders = {name: [render(s, sizes[name]) for s in scenes] for name in names}
    base_name, sr_names = names[0], names[1:]
    start = torch.stack([to_tensor(image) for image in renders[base_name]])
    text = pipe.encode_prompts(prompts)
    started = time.perf_counter()
    outputs = pipe.generate_from_embeddings(*text, seeds=list(range(count)),
                                            options=pipe.sampling_options(start_at_stage=sr_names[0]),
                                            start=start, max_batch_size=4, progress=False)
    result = {"scenes": count, "seconds": round(time.perf_counter() - started, 1),
              base_name: {"compliance_of_input": _compliance(start, prompts)}}
    given = renders[base_name]
    for name in sr_names:
        result[name] = {**_fidelity(outputs[name], renders[name], renders[base_name], given),
                        "compliance": _compliance(outputs[name], prompts)}
        given = outputs[name]
    if len(sr_names) > 1:  # the last stage alone, from the true render at its input size
        last, before = sr_names[-1], sr_names[-2]
        alone = pipe.generate_from_embeddings(*text, seeds=list(range(count)),
                                              options=pipe.sampling_options(start_at_stage=last),
                                              start=torch.stack([to_tensor(i) for i in renders[before]]),
                                              max_batch_size=4, progress=False)[last]
        result[f"{last}_from_true_{sizes[before]}"] = _fidelity(alone, renders[last], renders[before],
                                                                renders[before])
    return result


def cascade_section(pipe: Imagen, count: int) -> dict:
    prompts = held_out_prompts(count)
    started = time.perf_counter()
    outputs = pipe.generate(prompts, seed=0, max_batch_size=4, progress=False)
    result = {"prompts": count, "seconds": round(time.perf_counter() - started, 1)}
    names = list(outputs)
    base = outputs[names[0]]
    for name in names:
        result[name] = {"compliance": _compliance(outputs[name], prompts)}
        if name != names[0]:
            compared = [compare_to_bicubic(hi, lo) for hi, lo in zip(outputs[name], base, strict=True)]
            result[name].update(_mean([{"color_drift_vs_base": c["color_drift"], "flat_grain": c["flat_grain"],
                                        "sharpness_vs_bicubic": c["ratio"]} for c in compared]))
    return result


def steps_section(pipe: Imagen, count: int) -> list[dict]:
    scenes = held_out_scenes(count)
    first, sr_name = list(pipe.stages)[:2]
    lows = [render(s, pipe.stages[first].resolution) for s in scenes]
    truths = [render(s, pipe.stages[sr_name].resolution) for s in scenes]
    start = torch.stack([to_tensor(image) for image in lows])
    text = pipe.encode_prompts([s.caption for s in scenes])
    rows = []
    for guidance in (1.0, 3.0):
        for steps in (1, 2, 4, 15):
            options = pipe.sampling_options(start_at_stage=sr_name, stop_at_stage=sr_name, num_inference_steps=steps,
                                            guidance_scale=guidance)
            out = pipe.generate_from_embeddings(*text, seeds=list(range(count)), options=options, start=start,
                                                max_batch_size=4, progress=False)[sr_name]
            rows.append({"stage": sr_name, "steps": steps, "guidance": guidance,
                         **_mean([compare_to_truth(o, t, low) for o, t, low in zip(out, truths, lows, strict=True)])})
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def probe_section(pipe: Imagen) -> dict:
    """Each SR stage's x0 colour error at high noise (imagen.eval.probe), in RGB levels."""
    return {name: {k: round(v, 2) for k, v in high_noise_color_error(pipe, name).items()}
            for name, stage in pipe.stages.items() if stage.config.is_super_resolution}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes", help="model name or directory (default: the shipped shapes)")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes for the truth section (default 8)")
    parser.add_argument("--prompts", type=int, default=12, help="held-out prompts for the cascade section")
    parser.add_argument("--sections", default="truth,cascade,probe",
                        help="comma-separated: truth,cascade,probe,steps")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 scenes, 2 prompts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"truth", "cascade", "probe", "steps"}
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; valid: truth, cascade, probe, steps")
    if args.threads:
        torch.set_num_threads(args.threads)
    scenes, prompts = (2, 2) if args.quick else (args.scenes, args.prompts)
    pipe = Imagen.from_pretrained(args.model)
    if len(pipe.stages) < 2:
        parser.error(f"{args.model} has no super-resolution stage")
    result: dict = {"model": str(args.model)}
    if "probe" in sections:
        result["probe"] = probe_section(pipe)
        print(result["probe"], file=sys.stderr, flush=True)
    if "truth" in sections:
        result["truth"] = truth_section(pipe, scenes)
        print(result["truth"], file=sys.stderr, flush=True)
    if "cascade" in sections:
        result["cascade"] = cascade_section(pipe, prompts)
    if "steps" in sections:
        result["steps"] = steps_section(pipe, 2 if args.quick else 4)
    result["machine"] = machine()
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
