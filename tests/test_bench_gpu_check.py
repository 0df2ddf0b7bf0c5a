"""bench/gpu_check.py, the script prepared for a GPU machine, run on the CPU at reduced sizes: its code paths
(matmul rates, SDPA kernels, the full-width step against --plan) work before any GPU is at hand."""

from __future__ import annotations

import json

import pytest
import torch

from bench.gpu_check import main


def test_the_gpu_script_runs_its_code_paths_on_the_cpu(capsys):
    assert main(["--device", "cpu", "--quick", "--sections", "matmul,sdpa,full_width"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu"
    assert result["matmul"]["fp32_tflops"] > 0 and result["matmul"]["bf16_tflops"] > 0
    assert result["sdpa"]["math"]["ok"]  # the reference kernel runs everywhere; the others say why they do not
    assert all(row["ok"] or row["error"] for row in result["sdpa"].values())
    step = result["full_width"]
    assert step["planned_gib"] > 0 and step["step_s"] > 0 and step["measured_peak_gib"] is None  # peak: CUDA only


def test_without_a_gpu_it_says_so_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(SystemExit, match="no CUDA GPU here"):
        main([])
