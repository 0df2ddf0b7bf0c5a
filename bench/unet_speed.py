#!/usr/bin/env python
"""Efficient U-Net vs the imagen-pytorch 2.1.0 U-Net at matched parameter counts, on CPU.

For the base (64 px, batch 4) and SR 64->256 (256 px, batch 4) U-Nets of the peer's anchor harness
(`../shared/anchors/imagen_pytorch_bench.py`) and our bench configs matched to them within 5% of
parameters, measures with the same protocol on both sides:

- train step: forward + backward + AdamW step, MSE loss against random noise, random data, time and
  text (B, 16, 768); median over the timed steps;
- peak RSS of the training phase (VmHWM from /proc/self/status; each model in its own process);
- sampling-mode forward: eval, no_grad, batch 8 (one doubled classifier-free guidance batch of 4).

Also the SR Efficient-ordering ablation (efficient_order on vs off). Every model runs in a separate
subprocess: ours with this interpreter, the peer with its own venv (`--peer-python`). The machine is shared
and noisy: read the ratios, which are measured side by side in one run.

Usage:  python bench/unet_speed.py [--quick] [--threads 2] [--rounds R] [--out FILE]
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
from bench.common import DEFAULT_HARNESS, DEFAULT_PEER_PYTHON, emit, machine, spawn_json  # noqa: E402

TEXT_DIM, TEXT_LEN, BATCH, FORWARD_BATCH = 768, 16, 4, 8

# Our bench configs (configs.UNetConfig fields), matched to the peer's parameter counts within 5%.
# Efficient U-Net choices: levels run at half resolution (efficient ordering), one residual block at the
# high-resolution levels and more at low resolution, where channels are cheap.
OURS = {
    "base": {"resolution": 64, "lowres_cond": False, "unet": {
        "channels": 64, "channel_mults": [1, 2, 3, 4], "num_res_blocks": [1, 2, 2, 2],
        "self_attn": [False, True, True, True], "cross_attn": [False, True, True, True],
        "head_dim": 64, "cond_dim": 256}},
    "sr256": {"resolution": 256, "lowres_cond": True, "unet": {
        "channels": 32, "channel_mults": [1, 2, 4, 8, 8], "num_res_blocks": [1, 1, 2, 2, 3],
        "self_attn": [False, False, False, False, True], "cross_attn": [False, False, False, True, True],
        "head_dim": 64, "cond_dim": 256}},
}
# The peer's U-Nets, exactly as in the anchor harness (`base_cfg`, `sr_cfg`; the SR one gets lowres_cond
# from `Imagen`, which we pass directly).
PEER = {
    "base": {"resolution": 64, "lowres_cond": False, "unet": {
        "dim": 64, "dim_mults": [1, 2, 4], "num_resnet_blocks": 2, "layer_attns": [False, False, True],
        "layer_cross_attns": [False, True, True], "text_embed_dim": TEXT_DIM}},
    "sr256": {"resolution": 256, "lowres_cond": True, "unet": {
        "dim": 32, "dim_mults": [1, 2, 4, 8], "num_resnet_blocks": [2, 2, 2, 2],
        "layer_attns": [False, False, False, True], "layer_cross_attns": [False, False, False, True],
        "memory_efficient": True, "text_embed_dim": TEXT_DIM}},
}


# ---------------------------------------------------------------------------------------------------------
# Worker side: one model in one process. Only stdlib at module level, so the peer's venv can run this file.
# ---------------------------------------------------------------------------------------------------------

def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def build_ours(model: str, overrides: dict):
    import dataclasses

    from configs import UNetConfig
    from unets import EfficientUNet

    spec = OURS[model]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["unet"].items()}
    cfg = dataclasses.replace(UNetConfig(**fields), **overrides)
    net = EfficientUNet(cfg, text_dim=TEXT_DIM, lowres_cond=spec["lowres_cond"])

    def call(batch: dict, train: bool):
        return net(batch["x"], batch["t"], text_embeds=batch["text"], text_mask=batch["mask"],
                   drop_text=batch["drop"], lowres=batch.get("lowres"), lowres_level=batch.get("level"))

    return net, call, dataclasses.asdict(cfg)


def build_peer(model: str, harness: str):
    import importlib.util

    spec_ = importlib.util.spec_from_file_location("anchor_harness", harness)
    anchor = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(anchor)  # offline guards: HF_HUB_OFFLINE, throw-away HF cache, sockets refused
    anchor.offline_setup([])
    from imagen_pytorch import Unet

    spec = PEER[model]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["unet"].items()}
    net = Unet(**kwargs, lowres_cond=spec["lowres_cond"])

    def call(batch: dict, train: bool):
        return net(batch["x"], batch["t"], text_embeds=batch["text"], text_mask=batch["mask"],
                   lowres_cond_img=batch.get("lowres"), lowres_noise_times=batch.get("level"),
                   cond_drop_prob=0.1 if train else 0.0)

    return net, call, spec["unet"]


def _make_batch(torch, size: int, resolution: int, lowres_cond: bool, cfg_doubled: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "x": torch.randn(size, 3, resolution, resolution, generator=g),
        "noise": torch.randn(size, 3, resolution, resolution, generator=g),
        "t": torch.rand(size, generator=g),
        "text": torch.randn(size, TEXT_LEN, TEXT_DIM, generator=g),
        "mask": torch.ones(size, TEXT_LEN, dtype=torch.bool),
    }
    if cfg_doubled:  # (cond ‖ uncond), as classifier-free guidance batches it
        batch["drop"] = torch.arange(size) >= size // 2
    else:  # 10% caption drop in training
        batch["drop"] = torch.rand(size, generator=g) < 0.1
    if lowres_cond:
        batch["lowres"] = torch.rand(size, 3, resolution, resolution, generator=g) * 2 - 1
        batch["level"] = torch.rand(size, generator=g)
    return batch


def run_worker(args: argparse.Namespace) -> dict:
    import gc

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.worker == "ours":
        overrides = json.loads(args.overrides) if args.overrides else {}
        net, call, config = build_ours(args.model, overrides)
        spec = OURS[args.model]
    else:
        net, call, config = build_peer(args.model, args.harness)
        spec = PEER[args.model]
    params = sum(p.numel() for p in net.parameters())
    res, lowres_cond = spec["resolution"], spec["lowres_cond"]
    rss_before = _proc_status_mb("VmRSS")

    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batch = _make_batch(torch, BATCH, res, lowres_cond, cfg_doubled=False, seed=1)
    step_times, losses = [], []
    for k in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = F.mse_loss(call(batch, True), batch["noise"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        losses.append(round(loss.item(), 4))
        if k >= args.warmup:
            step_times.append(elapsed)
    peak_train = _proc_status_mb("VmHWM")
    del opt, loss
    gc.collect()

    net.eval()
    batch = _make_batch(torch, FORWARD_BATCH, res, lowres_cond, cfg_doubled=True, seed=2)
    forward_times = []
    with torch.no_grad():
        for k in range(args.warmup + args.forwards):
            start = time.perf_counter()
            out = call(batch, False)
            elapsed = time.perf_counter() - start
            if k >= args.warmup:
                forward_times.append(elapsed)
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:  # deterministic, unlike the timings
        call(_make_batch(torch, BATCH, res, lowres_cond, cfg_doubled=True, seed=3), False)
    return {"params": params, "step_s": step_times, "forward_s": forward_times, "peak_rss_mb": round(peak_train, 1),
            "forward_gflop_batch4": round(counter.get_total_flops() / 1e9, 2),
            "rss_before_train_mb": round(rss_before, 1), "losses": losses, "output_finite": bool(out.isfinite().all()),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "config": config}


# ---------------------------------------------------------------------------------------------------------
# Driver side: spawns the workers, pairs ours with the peer, and prints the JSON.
# ---------------------------------------------------------------------------------------------------------

def _spawn(python: str, worker: str, model: str, args: argparse.Namespace, overrides: dict | None = None) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--model", model, "--threads", str(args.threads),
           "--steps", str(args.steps), "--forwards", str(args.forwards), "--warmup", str(args.warmup),
           "--harness", str(args.harness)]
    if overrides:
        cmd += ["--overrides", json.dumps(overrides)]
    return spawn_json(cmd, f"unet_speed worker {worker}/{model}", args.threads)


def _merge(runs: list[dict]) -> dict:
    """Pool the timed steps of several rounds of the same model; peak RSS is the largest seen."""
    out = dict(runs[0])
    out["step_s"] = [t for r in runs for t in r["step_s"]]
    out["forward_s"] = [t for r in runs for t in r["forward_s"]]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return out


def _summary(ours: dict, peer: dict) -> dict:
    o_step, p_step = statistics.median(ours["step_s"]), statistics.median(peer["step_s"])
    o_fwd, p_fwd = statistics.median(ours["forward_s"]), statistics.median(peer["forward_s"])
    out = {
        "ours_params": ours["params"], "peer_params": peer["params"],
        "params_ratio": round(ours["params"] / peer["params"], 4),
        "ours_step_s": round(o_step, 4), "peer_step_s": round(p_step, 4), "step_speedup": round(p_step / o_step, 3),
        "ours_peak_rss_mb": ours["peak_rss_mb"], "peer_peak_rss_mb": peer["peak_rss_mb"],
        "rss_ratio": round(ours["peak_rss_mb"] / peer["peak_rss_mb"], 3),
        "ours_forward_s": round(o_fwd, 4), "peer_forward_s": round(p_fwd, 4),
        "forward_speedup": round(p_fwd / o_fwd, 3),
        "ours_forward_gflop_batch4": ours["forward_gflop_batch4"],
        "peer_forward_gflop_batch4": peer["forward_gflop_batch4"],
        # the fastest repeat of each side: interference from other jobs only ever adds time
        "step_speedup_best": round(min(peer["step_s"]) / min(ours["step_s"]), 3),
        "forward_speedup_best": round(min(peer["forward_s"]) / min(ours["forward_s"]), 3),
    }
    for side, run in (("ours", ours), ("peer", peer)):
        out[f"{side}_rss_before_train_mb"] = run["rss_before_train_mb"]
        out[f"{side}_step_s_all"] = [round(t, 4) for t in run["step_s"]]
        out[f"{side}_forward_s_all"] = [round(t, 4) for t in run["forward_s"]]
        out[f"{side}_output_finite"] = run["output_finite"]
        out[f"{side}_config"] = run["config"]
    return out


def run_driver(args: argparse.Namespace) -> dict:
    if not Path(args.peer_python).exists():
        raise SystemExit(f"error: peer python {args.peer_python} not found; build it with "
                         f"../shared/anchors/setup.sh or pass --peer-python")
    if not Path(args.harness).exists():
        raise SystemExit(f"error: anchor harness {args.harness} not found; pass --harness")
    start = time.perf_counter()
    load_before = list(os.getloadavg())
    result: dict = {}
    runs: dict[str, list[dict]] = {}
    jobs = [("ours", "base", None), ("peer", "base", None), ("ours", "sr256", None), ("peer", "sr256", None),
            ("ours", "sr256", {"efficient_order": False})]
    for round_ in range(args.rounds):
        for worker, model, overrides in jobs:
            key = f"{worker}/{model}" + ("/classic_order" if overrides else "")
            python = sys.executable if worker == "ours" else str(args.peer_python)
            print(f"[round {round_ + 1}/{args.rounds}] {key} ...", file=sys.stderr, flush=True)
            runs.setdefault(key, []).append(_spawn(python, worker, model, args, overrides))
    merged = {k: _merge(v) for k, v in runs.items()}
    for model in ("base", "sr256"):
        result[model] = _summary(merged[f"ours/{model}"], merged[f"peer/{model}"])
    on, off = merged["ours/sr256"], merged["ours/sr256/classic_order"]
    ablation = {"on_params": on["params"], "off_params": off["params"]}
    for what in ("step_s", "forward_s"):
        t_on, t_off = statistics.median(on[what]), statistics.median(off[what])
        ablation.update({f"on_{what}": round(t_on, 4), f"off_{what}": round(t_off, 4),
                         f"{what.split('_')[0]}_speedup": round(t_off / t_on, 3)})
    ablation.update({"on_peak_rss_mb": on["peak_rss_mb"], "off_peak_rss_mb": off["peak_rss_mb"],
                     "on_forward_gflop_batch4": on["forward_gflop_batch4"],
                     "off_forward_gflop_batch4": off["forward_gflop_batch4"]})
    result["sr256_efficient_order_ablation"] = ablation
    result["targets"] = {m: {"step_speedup>=2": result[m]["step_speedup"] >= 2.0,
                             "rss_ratio<=0.6": result[m]["rss_ratio"] <= 0.6,
                             "forward_speedup>=1.5": result[m]["forward_speedup"] >= 1.5,
                             "params_within_5pct": abs(result[m]["params_ratio"] - 1) <= 0.05}
                         for m in ("base", "sr256")}
    result["protocol"] = {"batch": BATCH, "forward_batch": FORWARD_BATCH, "text": [TEXT_LEN, TEXT_DIM],
                          "warmup": args.warmup, "timed_steps_per_round": args.steps,
                          "timed_forwards_per_round": args.forwards, "rounds": args.rounds,
                          "optimizer": "AdamW(lr=1e-4)", "loss": "MSE to noise", "quick": args.quick}
    result["machine"] = {**machine(args.threads), "peer_torch": merged["peer/base"]["torch"],
                         "load_avg_before": load_before, "load_avg_after": list(os.getloadavg())}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run (about 2 minutes): 1 round, few steps")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of all workers (default 2, quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed train steps per worker and round")
    ap.add_argument("--forwards", type=int, default=None, help="timed sampling forwards per worker and round")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps / forwards per worker")
    ap.add_argument("--peer-python", default=str(DEFAULT_PEER_PYTHON), help="python of the imagen-pytorch venv")
    ap.add_argument("--harness", default=str(DEFAULT_HARNESS), help="the anchor harness (for its offline_setup)")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--worker", choices=["ours", "peer"], help=argparse.SUPPRESS)
    ap.add_argument("--model", choices=sorted(OURS), help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    defaults = (1, 2, 2, 1) if args.quick else (2, 5, 5, 2)  # rounds, steps, forwards, warmup
    for name, value in zip(("rounds", "steps", "forwards", "warmup"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    result = run_driver(args)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
