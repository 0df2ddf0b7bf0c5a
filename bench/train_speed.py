#!/usr/bin/env python
"""Training speed: images/s and peak RSS of each `shapes-tiny` stage's full training step, and our stage
trainer side by side with imagen-pytorch 2.1.0's `ImagenTrainer` at matched parameters, on CPU.

1. Stages. For each stage of the preset (`--config`, default shapes-tiny) at its own batch size: the whole
   `StageTrainer` step on real loader batches, as `imagen-train` runs it: data loading (shapes rendered on
   the fly, SR crops and low-res images), text encoding (the embedded T5), forward + backward, gradient
   clipping, AdamW, LR schedule and EMA. Median over the timed steps after untimed warm-up steps; the data
   and text parts of a step are reported too. Each stage runs in its own process, so its peak RSS (VmHWM,
   the whole process: imports, text encoder, model, optimizer, data) is its own.
2. Against the peer. The anchor harness's "d1" measurement (`../shared/anchors/imagen_pytorch_bench.py`):
   `ImagenTrainer(imagen)` with its defaults (Adam lr 1e-4, EMA on, accelerate on CPU),
   `trainer(images, text_embeds=, text_masks=, unet_number=1)` + `trainer.update(unet_number=1)`, batch 4 at
   64 px, random images and random text embeddings (4, 16, 768). Ours: the same `StageTrainer._train_step`
   as in 1, with `bench/unet_speed.py`'s `OURS["base"]` U-Net (matched to the peer's base U-Net within 5% of
   parameters, 768-dim text input) and batch 4, fed the same kind of random images and random (4, 16, 768)
   embeddings directly (a stand-in text encoder), so the comparison is trainer against trainer. Same
   warm-up and timed steps on both sides; each side in its own process (the peer in its own venv), in
   `--rounds` alternating rounds.

The machine is shared and noisy: read the ratios measured side by side in one run.

Usage:  python bench/train_speed.py [--quick] [--threads 2] [--config shapes-tiny] [--out FILE]
Prints one JSON object as the last line of stdout (DESIGN.md section 7):
{"stages": {"base": {"images_per_s", "peak_rss_mb", ...}, "sr1": ..., "sr2": ...},
 "peer": {"ours_step_s", "peer_step_s", "speedup", "ours_peak_rss_mb", "peer_peak_rss_mb", "ours_params",
          "peer_params", ...}, "machine": {...}}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script, in our venv or in the peer's
    sys.path.insert(0, str(ROOT))

# stdlib only at import: the peer's venv runs this file too
from bench.common import (  # noqa: E402
    DEFAULT_HARNESS,
    DEFAULT_PEER_PYTHON,
    check_peer,
    emit,
    machine,
    peak_rss_mb,
    peer_offline,
    spawn_json,
)
from bench.unet_speed import OURS, PEER, TEXT_DIM, TEXT_LEN  # noqa: E402

BATCH = 4  # the peer comparison's batch (the harness's)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) / 1024.0 for line in f if line.startswith("VmRSS:")), float("nan"))


def _random_text(torch, batch: int):
    """The harness's text: randn (batch, 16, 768) from a generator seeded 1234, all-True mask."""
    g = torch.Generator().manual_seed(1234)
    return torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g), torch.ones(batch, TEXT_LEN, dtype=torch.bool)


def matched_overrides(config: str) -> list[str]:
    """Config overrides that give `config`'s base stage unet_speed's OURS["base"] U-Net and batch 4."""
    spec = OURS["base"]
    out = [f"base.resolution={spec['resolution']}", f"base.train.batch_size={BATCH}"]
    for key, value in spec["unet"].items():
        text = ",".join(str(v).lower() for v in value) if isinstance(value, list) else str(value)
        out.append(f"base.unet.{key}={text}")
    return out


# ---------------------------------------------------------------------------------------------------------
# Workers: one measurement in one process; each prints one JSON line.
# ---------------------------------------------------------------------------------------------------------

class _Timed:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        out = self.fn(*args)
        self.seconds += time.perf_counter() - start
        return out


class _RandomText:
    """A stand-in text encoder (the `imagen.text.TextEncoder` protocol): the harness's random (B, 16, 768)
    embeddings whatever the captions, as the peer is fed."""

    embed_dim, max_length = TEXT_DIM, TEXT_LEN
    identity = {"name": "random-768", "sha256": "random"}

    def encode(self, texts):
        import torch

        return _random_text(torch, len(texts))


def _timed_steps(trainer, batches, warmup: int, steps: int) -> dict:
    """Run warm-up + timed `StageTrainer._train_step`s on `next(batches)`; step, data and text seconds."""
    text = trainer.text = _Timed(trainer.text)
    step_s, data_s, text_s, losses = [], [], [], []
    for k in range(warmup + steps):
        text.seconds = 0.0
        start = time.perf_counter()
        batch = next(batches)
        loaded = time.perf_counter()
        loss, _ = trainer._train_step(batch)
        trainer.step += 1
        done = time.perf_counter()
        losses.append(round(float(loss), 4))
        if k >= warmup:
            step_s.append(done - start)
            data_s.append(loaded - start)
            text_s.append(text.seconds)
    return {"step_s": step_s, "data_s": data_s, "text_s": text_s, "losses": losses}


def _stage_trainer(config, name: str, encoder, tmp: str):
    from accelerate import Accelerator

    from trainers.trainer import StageTrainer

    accelerator = Accelerator(cpu=True, mixed_precision="no")
    return StageTrainer(config, name, Path(tmp) / name, accelerator, encoder, cache_dir=None, progress=False)


def worker_stage(args: argparse.Namespace) -> dict:
    """One stage of the preset, real loader batches, the embedded text encoder."""
    import torch

    from configs import load_config
    from imagen.text import load_text_encoder
    from trainers.data import make_loader

    config = load_config(args.config, args.set)
    encoder = load_text_encoder(config.text)
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        trainer = _stage_trainer(config, args.stage, encoder, tmp)
        train = trainer.train
        loader = make_loader(trainer.dataset, trainer.per_rank, seed=train.seed, rank=0, world_size=1,
                             num_workers=train.num_workers)
        rss_before = _rss_mb()
        timing = _timed_steps(trainer, iter(loader), args.warmup, args.steps)
        peak = peak_rss_mb()
        stage = trainer.config
    return {**timing, "peak_rss_mb": round(peak, 1), "rss_before_train_mb": round(rss_before, 1),
            "params": sum(p.numel() for p in trainer.stage.net.parameters()), "batch_size": train.batch_size,
            "resolution": stage.resolution, "crop_size": train.crop_size, "num_workers": train.num_workers,
            "text_encoder": encoder.identity.get("name"), "torch": torch.__version__}


def worker_ours_matched(args: argparse.Namespace) -> dict:
    """Our base trainer with OURS["base"]'s U-Net, batch 4, random images and (4, 16, 768) text."""
    import dataclasses
    import itertools

    import torch

    from configs import load_config
    from imagen.stage import Stage

    config = load_config(args.config, matched_overrides(args.config))
    with tempfile.TemporaryDirectory(prefix="train_speed_") as tmp:
        trainer = _stage_trainer(config, "base", _RandomText(), tmp)
        torch.manual_seed(0)
        batch = {"image": torch.rand(BATCH, 3, 64, 64) * 2 - 1, "caption": ["random text"] * BATCH}
        rss_before = _rss_mb()
        timing = _timed_steps(trainer, itertools.repeat(batch), args.warmup, args.steps)
        peak = peak_rss_mb()
    params_256 = sum(p.numel() for p in Stage(config.base, 256).net.parameters())  # with our T5's 256-dim text
    return {**timing, "peak_rss_mb": round(peak, 1), "rss_before_train_mb": round(rss_before, 1),
            "params": sum(p.numel() for p in trainer.stage.net.parameters()), "params_text256": params_256,
            "config": {name: dataclasses.asdict(getattr(config.base, name)) for name in ("unet", "objective", "train")},
            "torch": torch.__version__}


def worker_peer(args: argparse.Namespace) -> dict:
    """The harness's d1: ImagenTrainer(imagen) defaults, trainer(...) + trainer.update(unet_number=1)."""
    import random

    import torch

    peer_offline(args.harness)
    from imagen_pytorch import Imagen, ImagenTrainer, Unet

    random.seed(0)
    torch.manual_seed(0)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in PEER["base"]["unet"].items()}
    imagen = Imagen(unets=(Unet(**kwargs),), image_sizes=(64,), text_embed_dim=TEXT_DIM, cond_drop_prob=0.1)
    rss_before = _rss_mb()
    trainer = ImagenTrainer(imagen, lr=1e-4, verbose=False)  # no checkpoint_path: nothing is written
    images = torch.rand(BATCH, 3, 64, 64)
    embeds, mask = _random_text(torch, BATCH)
    step_s, losses = [], []
    for k in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = trainer(images, text_embeds=embeds, text_masks=mask, unet_number=1, max_batch_size=BATCH)
        trainer.update(unet_number=1)
        if k >= args.warmup:
            step_s.append(time.perf_counter() - start)
        losses.append(round(float(loss), 4))
    ema = trainer.ema_unets[0]
    return {"step_s": step_s, "losses": losses, "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_train_mb": round(rss_before, 1), "params": sum(p.numel() for p in imagen.unets[0].parameters()),
            "config": {"unet": PEER["base"]["unet"], "trainer": "ImagenTrainer(imagen, lr=1e-4) defaults: Adam betas "
                       "(0.9, 0.99), no grad clipping, no LR schedule", "ema": {"beta": ema.beta,
                       "update_every": ema.update_every, "update_after_step": ema.update_after_step}},
            "torch": torch.__version__}


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------

def _spawn(python: str, args: argparse.Namespace, *worker_args: str, steps: int, warmup: int) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--threads", str(args.threads), "--harness", str(args.harness),
           "--config", args.config, "--steps", str(steps), "--warmup", str(warmup), *worker_args]
    for override in args.set:
        cmd += ["--set", override]
    return spawn_json(cmd, f"train_speed worker {' '.join(worker_args)}", args.threads)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _stage_summary(run: dict) -> dict:
    step = _median(run["step_s"])
    return {"images_per_s": round(run["batch_size"] / step, 2), "peak_rss_mb": run["peak_rss_mb"],
            "step_s": round(step, 4), "data_s": round(_median(run["data_s"]), 4),
            "text_s": round(_median(run["text_s"]), 4), "batch_size": run["batch_size"],
            "resolution": run["resolution"], "crop_size": run["crop_size"], "params": run["params"],
            "rss_before_train_mb": run["rss_before_train_mb"], "step_s_all": [round(t, 4) for t in run["step_s"]],
            "losses": run["losses"]}


def _peer_summary(ours: list[dict], peer: list[dict]) -> dict:
    o_all = [t for r in ours for t in r["step_s"]]
    p_all = [t for r in peer for t in r["step_s"]]
    o_step, p_step = _median(o_all), _median(p_all)
    o, p = ours[0], peer[0]
    o_rss, p_rss = max(r["peak_rss_mb"] for r in ours), max(r["peak_rss_mb"] for r in peer)
    return {
        "ours_step_s": round(o_step, 4), "peer_step_s": round(p_step, 4), "speedup": round(p_step / o_step, 3),
        # the fastest step of each side: interference from other jobs only ever adds time
        "speedup_best": round(min(p_all) / min(o_all), 3),
        "ours_images_per_s": round(BATCH / o_step, 2), "peer_images_per_s": round(BATCH / p_step, 2),
        "ours_peak_rss_mb": o_rss, "peer_peak_rss_mb": p_rss, "rss_ratio": round(o_rss / p_rss, 3),
        "ours_rss_before_train_mb": o["rss_before_train_mb"], "peer_rss_before_train_mb": p["rss_before_train_mb"],
        "ours_params": o["params"], "peer_params": p["params"], "params_ratio": round(o["params"] / p["params"], 4),
        "ours_params_text256": o["params_text256"],
        "params_ratio_text256": round(o["params_text256"] / p["params"], 4),
        "batch": BATCH, "resolution": 64, "text": [BATCH, TEXT_LEN, TEXT_DIM],
        "ours_step_s_all": [round(t, 4) for t in o_all], "peer_step_s_all": [round(t, 4) for t in p_all],
        "ours_losses": o["losses"], "peer_losses": p["losses"],
        "ours_config": o["config"], "peer_config": p["config"],
        "notes": ["ours: StageTrainer._train_step (forward + backward, grad-norm clip 1.0, AdamW, LR schedule, EMA "
                  "every step); peer: ImagenTrainer defaults (Adam, no clipping, EMA every 10 steps after step "
                  "100, as ema-pytorch defaults), so ours does slightly more work per step",
                  "the peer's Imagen holds only the base U-Net (the harness's d1 also carries the SR U-Net, its "
                  "EMA copy and optimizer, which raises its RSS); both sides: random images and random "
                  "(4, 16, 768) text, no data loading or text encoding",
                  "peak RSS: VmHWM of each side's whole process (imports included)"],
    }


def run_driver(args: argparse.Namespace) -> dict:
    check_peer(args.peer_python, args.harness)
    from configs import load_config  # our venv

    start, load_before = time.perf_counter(), list(os.getloadavg())
    stages = {}
    for name in load_config(args.config, args.set).stages():
        print(f"stage {name} ...", file=sys.stderr, flush=True)
        run = _spawn(sys.executable, args, "--worker", "stage", "--stage", name, steps=args.stage_steps,
                     warmup=args.stage_warmup)
        stages[name] = _stage_summary(run)
        print(f"  {stages[name]['images_per_s']} images/s, peak RSS {stages[name]['peak_rss_mb']} MB",
              file=sys.stderr, flush=True)
    ours, peer = [], []
    for round_ in range(args.rounds):
        print(f"[round {round_ + 1}/{args.rounds}] ours base trainer (matched) ...", file=sys.stderr, flush=True)
        ours.append(_spawn(sys.executable, args, "--worker", "ours-matched", steps=args.steps, warmup=args.warmup))
        print(f"[round {round_ + 1}/{args.rounds}] peer ImagenTrainer ...", file=sys.stderr, flush=True)
        peer.append(_spawn(str(args.peer_python), args, "--worker", "peer", steps=args.steps, warmup=args.warmup))
    result = {"stages": stages, "peer": _peer_summary(ours, peer)}
    result["protocol"] = {"config": args.config, "overrides": args.set, "stage_warmup": args.stage_warmup,
                          "stage_timed_steps": args.stage_steps, "peer_warmup": args.warmup,
                          "peer_timed_steps_per_round": args.steps, "rounds": args.rounds, "quick": args.quick}
    result["machine"] = {**machine(args.threads), "peer_torch": peer[0]["torch"], "load_avg_before": load_before,
                         "load_avg_after": list(os.getloadavg())}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run (about 2 minutes on an idle 2-core CPU): "
                                                         "1 warm-up + 2 timed steps everywhere, 1 round")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    ap.add_argument("--config", default="shapes-tiny", help="preset or config file of the stages (default "
                                                            "shapes-tiny); the peer comparison uses its base stage")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the stages, as imagen-train --set (repeatable)")
    ap.add_argument("--stage-steps", type=int, default=None, help="timed steps per stage (default 10, quick 2)")
    ap.add_argument("--stage-warmup", type=int, default=None, help="untimed steps per stage (default 2, quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per side and round of the peer comparison "
                                                            "(default 4, as the harness; quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per side and round (default 1)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds ours/peer (default 2, quick 1)")
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="python of the imagen-pytorch venv")
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS), help="the anchor harness (for its offline setup)")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--worker", choices=["stage", "ours-matched", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        workers = {"stage": worker_stage, "ours-matched": worker_ours_matched, "peer": worker_peer}
        print(json.dumps(workers[args.worker](args)), flush=True)
        return 0
    defaults = {"stage_steps": (10, 2), "stage_warmup": (2, 1), "steps": (4, 2), "warmup": (1, 1), "rounds": (2, 1)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    result = run_driver(args)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
