"""bench/unet_speed.py compares with imagen-pytorch at matched size: its configs of our U-Net stay within 5%
of the peer's parameter counts (measured with imagen-pytorch 2.1.0: DESIGN.md section 6)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

PEER_PARAMS = {"base": 15_687_864, "sr256": 20_504_118}
BENCH = Path(__file__).resolve().parents[2] / "bench" / "unet_speed.py"


@pytest.mark.parametrize("model", sorted(PEER_PARAMS))
def test_bench_configs_match_the_peer_within_5_percent(model):
    spec = importlib.util.spec_from_file_location("unet_speed_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with torch.device("meta"):
        net, _, config = bench.build_ours(model, {})
    params = sum(p.numel() for p in net.parameters())
    assert abs(params / PEER_PARAMS[model] - 1) <= 0.05, f"{model}: {params} vs peer {PEER_PARAMS[model]}"
    assert config["efficient_order"]
