"""bf16 mixed precision trains on the CPU (torch autocast through accelerate) and follows the fp32 run: over 20
steps of the tiny base stage from the same seed, every logged loss within 10% of fp32's and the mean gap under
5% (bf16 keeps 8 bits of mantissa; the draws of every step are identical)."""

from __future__ import annotations

import json
import subprocess
import sys


def _losses(tmp_path, overrides, precision):
    out = tmp_path / precision
    sets = [x for o in [*overrides, "base.train.max_steps=20", f"base.train.mixed_precision={precision}",
                        "base.train.checkpoint_every=20"] for x in ("--set", o)]
    # a process each: accelerate fixes the precision of a process at its first Accelerator
    done = subprocess.run([sys.executable, "-m", "trainers.cli", "--config", "shapes-tiny", "--stage", "base",
                           "--output", str(out), "--no-progress", *sets], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (out / "base" / "metrics.jsonl").read_text().splitlines()
               if line.startswith("{")]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_bf16_training_follows_fp32(tmp_path, tiny_overrides):
    fp32, bf16 = _losses(tmp_path, tiny_overrides, "no"), _losses(tmp_path, tiny_overrides, "bf16")
    assert len(fp32) == 20 and fp32.keys() == bf16.keys()
    gaps = [abs(bf16[s] - fp32[s]) / fp32[s] for s in fp32]
    assert max(gaps) < 0.10 and sum(gaps) / len(gaps) < 0.05, gaps
    assert any(bf16[s] != fp32[s] for s in fp32)  # bf16 really ran


def test_fp16_without_a_gpu_is_refused_in_one_line(tmp_path, tiny_overrides, capsys):
    import torch

    from trainers.cli import main

    if torch.cuda.is_available():
        return
    sets = [x for o in [*tiny_overrides, "base.train.mixed_precision=fp16"] for x in ("--set", o)]
    assert main(["--config", "shapes-tiny", "--stage", "base", "--output", str(tmp_path / "r"), *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fp16 needs a CUDA GPU" in err and "use bf16" in err
