#!/usr/bin/env python
"""Kill a training run N times at random moments (SIGKILL, some of them inside checkpoint writes), resume it each
time, and check that it ends exactly where an uninterrupted run ends: the same loss at every step, the same
exported weights bit for bit, and every checkpoint left on disk verifying against its digest.

The run is a tiny base stage (16 px, 8 channels) that checkpoints every step, so most kills land near or inside
a checkpoint write. Kills are timed at random after the first metrics record of each attempt.

Usage:  python bench/soak.py [--kills 20] [--steps 600] [--seed 0]
Prints one JSON line: {"kills", "kills_in_checkpoint_writes", "resumes", "bit_identical_losses",
"bit_identical_weights", "checkpoints_verified", "checkpoints", "seconds"}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import emit  # noqa: E402

TINY = ["base.resolution=16", "base.unet.channels=8", "base.unet.channel_mults=1,2", "base.unet.num_res_blocks=1,1",
        "base.unet.self_attn=false,true", "base.unet.cross_attn=false,true", "base.unet.head_dim=8",
        "base.unet.cond_dim=32", "base.train.batch_size=4", "base.train.warmup_steps=0", "base.train.log_every=1",
        "base.train.checkpoint_every=1", "base.train.keep_checkpoints=3", "base.sampler.num_steps=2",
        "sr1=none", "sr2=none"]


def command(run_dir: Path, steps: int, *extra: str) -> list[str]:
    sets = [x for o in TINY for x in ("--set", o)]
    return [sys.executable, "-m", "trainers.cli", "--config", "shapes-tiny", "--stage", "base", "--output",
            str(run_dir), *sets, "--max-steps", str(steps), "--no-progress", *extra]


def environment() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def losses(run_dir: Path) -> dict[int, float]:
    """The loss of each step; a step logged again after a resume keeps its last record."""
    found = {}
    path = run_dir / "base" / "metrics.jsonl"
    if not path.is_file():
        return found
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a kill tore
        if "loss" in record and not record.get("skipped"):
            found[record["step"]] = record["loss"]
    return found


def kill_once(run_dir: Path, steps: int, rng: random.Random, resume: bool) -> tuple[bool, bool]:
    """Start (or resume) the run and SIGKILL it at a random moment; (killed, inside a checkpoint write)."""
    process = subprocess.Popen(command(run_dir, steps, *(["--resume"] if resume else [])), env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = len(losses(run_dir))
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and len(losses(run_dir)) <= start:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.5))
    checkpoints = run_dir / "base" / "checkpoints"
    writing = checkpoints.is_dir() and any(p.name.endswith(".tmp") for p in checkpoints.iterdir())
    if process.poll() is not None:
        return False, False
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return True, writing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of the run (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    args = parser.parse_args(argv)
    from safetensors.torch import load_file

    from trainers.checkpoints import list_checkpoints, load_checkpoint

    rng = random.Random(args.seed)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        whole, soaked = Path(tmp) / "whole", Path(tmp) / "soaked"
        subprocess.run(command(whole, args.steps), env=environment(), check=True, capture_output=True)
        kills = in_writes = resumes = 0
        while kills < args.kills:
            killed, writing = kill_once(soaked, args.steps, rng, resume=kills > 0)
            if not killed:
                break  # the run finished before the kill: no step left to interrupt
            kills, in_writes, resumes = kills + 1, in_writes + writing, resumes + (kills > 0)
        done = subprocess.run(command(soaked, args.steps, "--resume"), env=environment(), capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
        verified, checkpoints = 0, list_checkpoints(soaked / "base" / "checkpoints")
        for path in checkpoints:
            try:
                load_checkpoint(path)
                verified += 1
            except ValueError as error:
                print(f"soak: {error}", file=sys.stderr)
        a, b = load_file(str(whole / "base.safetensors")), load_file(str(soaked / "base.safetensors"))
        same_weights = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
        result = {"kills": kills, "kills_in_checkpoint_writes": in_writes, "resumes": resumes + 1,
                  "final_exit": done.returncode, "steps": args.steps,
                  "bit_identical_losses": losses(whole) == losses(soaked) and len(losses(whole)) == args.steps,
                  "bit_identical_weights": same_weights, "checkpoints_verified": verified,
                  "checkpoints": len(checkpoints), "seconds": round(time.time() - started, 1)}
    emit(result)
    return 0 if result["bit_identical_losses"] and result["bit_identical_weights"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
