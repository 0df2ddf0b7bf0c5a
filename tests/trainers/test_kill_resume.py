"""A run killed with SIGKILL (or stopped with SIGTERM) and resumed reproduces the uninterrupted run's losses
bit for bit, and its checkpoints are never left half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.soak import losses
from trainers.checkpoints import list_checkpoints, load_checkpoint

STEPS = 8


def _command(run_dir: Path, overrides: list[str], *extra: str) -> list[str]:
    sets = [x for o in [*overrides, "base.train.checkpoint_every=1"] for x in ("--set", o)]
    return [sys.executable, "-m", "trainers.cli", "--config", "shapes-tiny", "--output", str(run_dir), *sets,
            "--max-steps", str(STEPS), "--no-progress", *extra]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _start_and_stop(run_dir: Path, overrides: list[str], sig: int, after_step: int) -> subprocess.Popen:
    process = subprocess.Popen(_command(run_dir, overrides), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = run_dir / "base" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metrics.is_file() and len(losses(run_dir)) >= after_step:
            break
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=120)
    return process


def test_sigkill_then_resume_is_bit_identical(tmp_path, tiny_overrides):
    whole = subprocess.run(_command(tmp_path / "whole", tiny_overrides), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _start_and_stop(tmp_path / "killed", tiny_overrides, signal.SIGKILL, after_step=3)
    assert killed.returncode == -signal.SIGKILL
    saved = list_checkpoints(tmp_path / "killed" / "base" / "checkpoints")
    assert saved and load_checkpoint(saved[-1])[0] < STEPS  # killed mid-run, the newest checkpoint loads
    resumed = subprocess.run(_command(tmp_path / "killed", tiny_overrides, "--resume"), env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(tmp_path / "killed") == losses(tmp_path / "whole")
    assert len(losses(tmp_path / "whole")) == STEPS


def test_sigterm_checkpoints_and_exits_130(tmp_path, tiny_overrides):
    stopped = _start_and_stop(tmp_path, tiny_overrides, signal.SIGTERM, after_step=2)
    assert stopped.returncode == 130, stopped.stderr.read().decode()[-2000:]
    assert "continue with: imagen-train" in stopped.stderr.read().decode()
    step, _ = load_checkpoint(list_checkpoints(tmp_path / "base" / "checkpoints")[-1])
    assert step == max(losses(tmp_path))
