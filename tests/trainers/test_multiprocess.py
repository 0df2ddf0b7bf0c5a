"""Two CPU processes (accelerate launch, gloo) compute the same gradients as one process at the same global
batch: each process takes its rows of the global batch and of its noise, and DDP averages the gradients."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parent / "grad_worker.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"


def test_two_processes_match_one_process_gradients(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    single = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one.safetensors")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
              str(WORKER), str(tmp_path / "two.safetensors")]
    double = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-2000:]
    assert "world size 2" in double.stdout and "world size 1" in single.stdout
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert set(one) == set(two)
    for name in one:  # float32 sums in a different order: equal to ~1e-6 relative
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-6, msg=name)
    assert one["loss"].item() > 0
