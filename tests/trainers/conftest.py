import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY_BASE = [
    "base.resolution=16", "base.unet.channels=8", "base.unet.channel_mults=1,2", "base.unet.num_res_blocks=1,1",
    "base.unet.self_attn=false,true", "base.unet.cross_attn=false,true", "base.unet.head_dim=8",
    "base.unet.cond_dim=32", "base.train.batch_size=4", "base.train.max_steps=6", "base.train.max_minutes=0",
    "base.train.warmup_steps=0", "base.train.log_every=1", "base.train.checkpoint_every=2",
    "base.sampler.num_steps=2",
]
TINY_SR = [
    "sr1.resolution=32", "sr1.lowres_resolution=16", "sr1.unet.channels=8", "sr1.unet.channel_mults=1,2",
    "sr1.unet.num_res_blocks=1,1", "sr1.unet.cross_attn=false,true", "sr1.unet.self_attn=false,false",
    "sr1.unet.head_dim=8", "sr1.unet.cond_dim=32", "sr1.train.batch_size=4", "sr1.train.crop_size=16",
    "sr1.train.max_steps=3", "sr1.train.max_minutes=0", "sr1.train.warmup_steps=0", "sr1.train.log_every=1",
    "sr1.train.checkpoint_every=2", "sr1.sampler.num_steps=2",
]

LAUNCH_STEPS = 10
# a warm-up (the schedule must count global steps), gradient clipping and checkpointing inside the FSDP units
LAUNCH_SETTINGS = [*TINY_BASE, "sr1=none", "sr2=none", f"base.train.max_steps={LAUNCH_STEPS}",
                   "base.train.checkpoint_every=5", "base.train.keep_checkpoints=5", "base.train.warmup_steps=3",
                   "base.train.batch_size=8", "base.unet.gradient_checkpointing=true"]
ACCELERATE = Path(sys.executable).parent / "accelerate"
LAUNCH_ENV = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def launch_training(args: list[str], processes: int, port: int, timeout: float = 600) -> None:
    """`imagen-train ARGS` in one process, or under `accelerate launch` on `processes` CPU processes (gloo)."""
    cli = ["-m", "trainers.cli", *args, "--no-progress"]
    if processes == 1:
        command = [sys.executable, *cli]
    else:
        command = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines",
                   "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port), *cli]
    done = subprocess.run(command, env=LAUNCH_ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def step_losses(run: Path) -> dict[int, float]:
    """The base stage's logged loss by step."""
    lines = (run / "base" / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r and not r.get("skipped")}


@pytest.fixture
def tiny_overrides():
    """A base-only cascade small enough to train a few steps in seconds (16 px, 8 channels)."""
    return [*TINY_BASE, "sr1=none", "sr2=none"]


@pytest.fixture
def tiny_cascade_overrides():
    """Base 16 px + SR 16 -> 32 px trained on 16 px crops."""
    return [*TINY_BASE, *TINY_SR, "sr2=none"]
