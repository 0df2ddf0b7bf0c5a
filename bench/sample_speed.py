#!/usr/bin/env python
"""Sampling speed: our cascade vs imagen-pytorch 2.1.0, on CPU.

1. Head to head, base stage: 64 px, batch 4, classifier-free guidance 5, dynamic thresholding (the peer's
   default percentile 0.95), the same sampler (DDPM ancestral, uniform time grid) and step count (50) on
   both sides, with the U-Nets matched in parameters by `bench/unet_speed.py` (its `OURS["base"]` and the
   peer's `PEER["base"]`, text (4, 16, 768)). Every U-Net call is counted: the peer runs guidance as two
   forwards of batch 4 per step, we run one forward on the doubled batch.
2. A whole cascade 64 -> 256 -> 1024 px for one image with its default sampling options: `--cascade-model`,
   the shipped `shapes` model by default (a model name or directory, or a preset name such as shapes-tiny,
   built with random weights: the latency does not depend on them); the median of `--cascade-repeats` images,
   with freed memory kept for reuse as the commands run ("cascade_1024_s": imagen.io.keep_freed_memory) and
   with glibc's default, as a library user gets it ("cascade_1024_glibc_default_s").
3. Our base (as in 1) with DPM-Solver++ at 25 steps against DDPM at 250 steps.

Each side runs in its own process (the peer in its own venv, `--peer-python`), one after the other, in
`--rounds` rounds of `--repeats` timed runs after an untimed warm-up; "ours_s"/"peer_s" are medians,
"speedup_best" the ratio of the fastest runs (other jobs only ever add time). The machine is shared and
noisy: read the ratios. `--quick` (about 2 minutes) runs 5-step samplings, scales DPM-Solver++ 25 and
DDPM 250 from their time per step, and says so in the JSON ("quick", "notes").

Usage:  python bench/sample_speed.py [--quick] [--threads 2] [--rounds R] [--out FILE]
Prints one JSON object as the last line of stdout (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script, in our venv or in the peer's
    sys.path.insert(0, str(ROOT))

# stdlib only at import: the peer's venv runs this file too
from bench.common import DEFAULT_HARNESS, DEFAULT_PEER_PYTHON, emit, machine, peak_rss_mb, spawn_json  # noqa: E402
from bench.unet_speed import OURS, PEER, TEXT_DIM, TEXT_LEN, build_peer  # noqa: E402

BATCH, GUIDANCE, PEER_PERCENTILE = 4, 5.0, 0.95
CASCADE_PROMPT = "a large red circle at the center on a blue background"


# ---------------------------------------------------------------------------------------------------------
# Workers: one side in one process; each prints one JSON line.
# ---------------------------------------------------------------------------------------------------------

def _text(torch, batch: int):
    g = torch.Generator().manual_seed(1234)
    return torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g), torch.ones(batch, TEXT_LEN, dtype=torch.bool)


def _counted(net) -> list[int]:
    """Count calls of `net.forward` (the peer calls it directly for guidance, bypassing module hooks)."""
    calls, forward = [0], net.forward

    def counting(*args, **kwargs):
        calls[0] += 1
        return forward(*args, **kwargs)

    net.forward = counting
    return calls


def _ours_base_stage():
    """Our base stage with the U-Net of unet_speed's OURS["base"] (random weights)."""
    import torch

    from configs import StageConfig, UNetConfig
    from imagen.stage import Stage

    spec = OURS["base"]
    unet = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["unet"].items()})
    stage = Stage(StageConfig(resolution=spec["resolution"], unet=unet), TEXT_DIM).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero output layer, so the sampler sees real predictions
        for p in stage.net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return stage


def worker_ours_base(runs: list[dict]) -> dict:
    """Each run: {"sampler", "steps", "repeats"}; the times and U-Net calls of sampling a batch of 4 with
    guidance 5."""
    import torch

    from imagen.options import SamplingOptions

    stage = _ours_base_stage()
    calls = _counted(stage.net)
    embeds, mask = _text(torch, BATCH)

    def sample(sampler: str, steps: int) -> None:
        grid = "uniform" if sampler == "ddpm" else "logsnr"
        options = SamplingOptions(guidance_scale=GUIDANCE, num_steps=steps, sampler=sampler, thresholding="dynamic",
                                  dynamic_percentile=PEER_PERCENTILE, time_grid=grid)
        stage.sample(embeds, mask, torch.Generator().manual_seed(0), options)

    sample("ddpm", 2)  # warm-up
    results = []
    for run in runs:
        times = []
        for _ in range(run.get("repeats", 1)):
            calls[0] = 0
            start = time.perf_counter()
            sample(run["sampler"], run["steps"])
            times.append(time.perf_counter() - start)
        results.append({**run, "s_all": times, "unet_calls": calls[0]})
    return {"runs": results, "params": sum(p.numel() for p in stage.net.parameters()), "torch": torch.__version__}


def worker_peer_base(steps: int, repeats: int, harness: str) -> dict:
    """imagen-pytorch's own sampler (`Imagen.sample`, DDPM) with the anchor harness's base U-Net."""
    import torch

    net, _, _ = build_peer("base", harness)  # offline setup first, then the harness's base U-Net
    from imagen_pytorch import Imagen

    torch.manual_seed(0)
    imagen = Imagen(unets=(net,), image_sizes=(PEER["base"]["resolution"],), timesteps=steps,
                    text_embed_dim=TEXT_DIM, cond_drop_prob=0.1).eval()
    unet = imagen.unets[0]
    calls = _counted(unet)
    embeds, mask = _text(torch, BATCH)
    scheduler = imagen.noise_schedulers[0]
    scheduler.num_timesteps = 2  # warm-up, as the anchor harness does
    imagen.sample(text_embeds=embeds, text_masks=mask, cond_scale=GUIDANCE, use_tqdm=False)
    scheduler.num_timesteps = steps
    times = []
    for _ in range(repeats):
        calls[0] = 0
        start = time.perf_counter()
        out = imagen.sample(text_embeds=embeds, text_masks=mask, cond_scale=GUIDANCE, use_tqdm=False)
        times.append(time.perf_counter() - start)
    return {"runs": [{"sampler": "ddpm", "steps": steps, "s_all": times, "unet_calls": calls[0]}],
            "params": sum(p.numel() for p in unet.parameters()), "torch": torch.__version__,
            "output_shape": list(out.shape), "dynamic_thresholding_percentile": imagen.dynamic_thresholding_percentile}


def worker_ours_cascade(model: str, steps: list[int] | None, repeats: int, kept_memory: bool) -> dict:
    """The cascade `model` (a saved model, else a preset with random weights), one image, its default options
    (or `steps` per stage), timed `repeats` times after a warm-up; with `kept_memory`, freed memory is kept
    for reuse as the commands do (imagen.io.keep_freed_memory), else glibc's default (a library user's)."""
    from configs import load_config, preset_names
    from imagen import Imagen
    from imagen.io import keep_freed_memory

    if kept_memory:
        keep_freed_memory()
    preset = model in preset_names()
    pipe = Imagen.from_config(load_config(model)).eval() if preset else Imagen.from_pretrained(model)
    calls = {name: _counted(stage.net) for name, stage in pipe.stages.items()}
    pipe.generate([CASCADE_PROMPT], num_inference_steps=1, progress=False)  # warm-up at every resolution
    options = pipe.sampling_options(num_inference_steps=steps)
    times, shapes = [], {}
    for _ in range(repeats):
        for c in calls.values():
            c[0] = 0
        start = time.perf_counter()
        out = pipe.generate([CASCADE_PROMPT], num_inference_steps=steps, seed=0, progress=False)
        times.append(time.perf_counter() - start)
        shapes = {k: list(v.shape) for k, v in out.items()}
    return {"s": statistics.median(times), "s_all": [round(t, 3) for t in times], "shapes": shapes,
            "unet_calls": {k: c[0] for k, c in calls.items()}, "kept_memory": kept_memory,
            "peak_rss_mb": round(peak_rss_mb(), 1), "options": {k: o.as_dict() for k, o in options.items()}}


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------

def _spawn(python: str, args: argparse.Namespace, *worker_args: str) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--threads", str(args.threads), "--harness", str(args.harness),
           *worker_args]
    return spawn_json(cmd, f"sample_speed worker {' '.join(worker_args)}", args.threads)


def run_driver(args: argparse.Namespace) -> dict:
    if not Path(args.peer_python).exists():
        raise SystemExit(f"error: peer python {args.peer_python} not found; build it with "
                         "../shared/anchors/setup.sh or pass --peer-python")
    start, notes = time.perf_counter(), []
    steps = args.steps
    # quick measures DPM-Solver++ and DDPM at `steps` steps and scales the time per step to 25 and 250
    dpm_steps, ddpm_steps = (25, 250) if not args.quick else (steps, steps)
    ours, peer = [], []
    for round_ in range(args.rounds):
        runs = [{"sampler": "ddpm", "steps": steps, "repeats": args.repeats}]
        if round_ == 0:
            runs += [{"sampler": "dpm++", "steps": dpm_steps, "repeats": args.repeats}] + \
                ([{"sampler": "ddpm", "steps": ddpm_steps}] if ddpm_steps != steps else [])
        print(f"[round {round_ + 1}/{args.rounds}] ours base ...", file=sys.stderr, flush=True)
        ours.append(_spawn(sys.executable, args, "--worker", "ours-base", "--runs", json.dumps(runs)))
        print(f"[round {round_ + 1}/{args.rounds}] peer base ...", file=sys.stderr, flush=True)
        peer.append(_spawn(str(args.peer_python), args, "--worker", "peer-base", "--steps", str(steps),
                           "--repeats", str(args.peer_repeats)))
    print("ours cascade 64 -> 256 -> 1024 ...", file=sys.stderr, flush=True)
    cascade_steps = args.cascade_steps
    cascade_args = ["--worker", "ours-cascade", "--cascade-model", args.cascade_model,
                    "--cascade-repeats", str(args.cascade_repeats),
                    *(["--cascade-steps", ",".join(map(str, cascade_steps))] if cascade_steps else [])]
    cascade = _spawn(sys.executable, args, *cascade_args, "--kept-memory")
    cascade_default = _spawn(sys.executable, args, *cascade_args)

    ours_all = [t for r in ours for t in r["runs"][0]["s_all"]]
    peer_all = [t for r in peer for t in r["runs"][0]["s_all"]]
    ours_s, peer_s = statistics.median(ours_all), statistics.median(peer_all)
    first = ours[0]["runs"]
    dpm, ddpm = first[1], first[2] if len(first) > 2 else first[0]
    # the fastest repeat: interference from other jobs only ever adds time
    dpm25, ddpm250 = min(dpm["s_all"]) * 25 / dpm["steps"], min(ddpm["s_all"]) * 250 / ddpm["steps"]
    for name, run, target in (("dpmpp25_s", dpm, 25), ("ddpm250_s", ddpm, 250)):
        if run["steps"] != target:
            notes.append(f"quick: {name} extrapolated from a {run['steps']}-step run (time per step x {target})")
    if steps != 50:
        notes.append(f"the head-to-head ran {steps} steps per side, not 50")
    if cascade_steps:
        notes.append(f"the cascade ran {cascade_steps} steps per stage, not the preset's")
    result = {
        "base": {"ours_s": round(ours_s, 3), "peer_s": round(peer_s, 3), "speedup": round(peer_s / ours_s, 3),
                 "unet_calls_ours": ours[0]["runs"][0]["unet_calls"],
                 "unet_calls_peer": peer[0]["runs"][0]["unet_calls"],
                 "steps": steps, "batch": BATCH, "guidance_scale": GUIDANCE, "sampler": "ddpm",
                 "thresholding": f"dynamic {PEER_PERCENTILE}", "ours_params": ours[0]["params"],
                 "peer_params": peer[0]["params"], "ours_s_all": [round(t, 3) for t in ours_all],
                 "peer_s_all": [round(t, 3) for t in peer_all],
                 "speedup_best": round(min(peer_all) / min(ours_all), 3)},
        "cascade_1024_s": round(cascade["s"], 3),
        "cascade_1024": {**cascade, "model": args.cascade_model},
        "cascade_1024_glibc_default_s": round(cascade_default["s"], 3),
        "cascade_1024_glibc_default": cascade_default,
        "dpmpp25_s": round(dpm25, 3),
        "ddpm250_s": round(ddpm250, 3),
        "dpmpp25_vs_ddpm250_speedup": round(ddpm250 / dpm25, 3),
        "unet_calls": {"dpmpp25": dpm["unet_calls"] * 25 // dpm["steps"],
                       "ddpm250": ddpm["unet_calls"] * 250 // ddpm["steps"]},
        "quick": args.quick, "notes": notes,
        "machine": {**machine(args.threads), "peer_torch": peer[0]["torch"], "load_avg": list(os.getloadavg())},
        "wall_s": round(time.perf_counter() - start, 1),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (about 2 minutes on an idle 2-core CPU): 1 round, 5-step runs of the base "
                         "(DPM-Solver++ 25 and DDPM 250 scaled from them)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the head-to-head (default 2, quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="steps of the head-to-head (default 50, quick 5)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of each of our runs (default 1, "
                                                                "quick 3)")
    ap.add_argument("--peer-repeats", type=int, default=None, help="timed repeats of the peer's run (default 1, "
                                                                   "quick 2)")
    ap.add_argument("--cascade-steps", type=lambda s: [int(v) for v in s.split(",")], default=None,
                    help="steps per cascade stage, e.g. 25,15,10 (default: the preset's)")
    ap.add_argument("--cascade-model", default="shapes",
                    help="the cascade timed end to end: a model name or directory, or a preset (random weights); "
                         "default: the shipped shapes model")
    ap.add_argument("--cascade-repeats", type=int, default=None,
                    help="timed images of the cascade, after a warm-up (default 5, quick 3)")
    ap.add_argument("--kept-memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="python of the imagen-pytorch venv")
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS), help="the anchor harness (for its offline setup)")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--worker", choices=["ours-base", "peer-base", "ours-cascade"], help=argparse.SUPPRESS)
    ap.add_argument("--runs", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        if args.worker == "ours-base":
            result = worker_ours_base(json.loads(args.runs))
        elif args.worker == "peer-base":
            result = worker_peer_base(args.steps, args.repeats, args.harness)
        else:
            result = worker_ours_cascade(args.cascade_model, args.cascade_steps, args.cascade_repeats,
                                         args.kept_memory)
        print(json.dumps(result))
        return 0
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.steps = args.steps or (5 if args.quick else 50)
    args.repeats = args.repeats or (3 if args.quick else 1)
    args.peer_repeats = args.peer_repeats or (2 if args.quick else 1)
    args.cascade_repeats = args.cascade_repeats or (3 if args.quick else 5)
    result = run_driver(args)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
