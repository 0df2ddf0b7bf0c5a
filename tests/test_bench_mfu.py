"""bench/mfu.py's measurement on a tiny U-Net: FLOPs counted, times taken, MFU and the operator breakdown."""

from __future__ import annotations

import copy

import torch

from bench.mfu import Workload, batch_sweep, count_flops, measure
from configs import UNetConfig
from unets import EfficientUNet


def _base_workload() -> Workload:
    config = UNetConfig(channels=8, channel_mults=(1, 2), num_res_blocks=(1, 1), self_attn=(False, False),
                        cross_attn=(False, True), head_dim=8, cond_dim=16)
    return Workload("tiny", EfficientUNet(config, text_dim=16), 16, False, train_batch=2, train_size=16,
                    sample_batch=1, sample_size=16)


def test_a_workload_is_measured_against_the_matmul_rate():
    config = UNetConfig(channels=8, channel_mults=(1, 2), num_res_blocks=(1, 1), self_attn=(False, True),
                        cross_attn=(False, True), head_dim=8, cond_dim=16)
    net = EfficientUNet(config, text_dim=16, lowres_cond=True)
    load = Workload("tiny", net, 16, True, train_batch=2, train_size=16, sample_batch=2, sample_size=16)
    forward = count_flops(load.sample_forward)
    assert forward > 0 and count_flops(load.forward_backward) > 2 * forward  # backward ~ twice the forward
    assert count_flops(lambda: load.sample_forward(encoded=False)) > forward  # the text, encoded once beforehand
    row = measure(load, bar=lambda: 100.0, repeats=1, rounds=2)
    for kind in ("train", "sample"):
        assert row[f"{kind}_gflop"] > 0 and row[f"{kind}_s"] > 0
        low, high = row[f"{kind}_mfu_range"]
        assert low <= row[f"{kind}_mfu"] <= high and row["matmul_gflops"] == 100.0, kind
        shares = row[f"{kind}_time_by_op"]
        assert 0 < sum(shares.values()) <= 1.001 and list(shares.values()) == sorted(shares.values(), reverse=True)
    assert any("conv" in op for op in row["train_time_by_op"])
    assert row["train_op_calls"] > 2 * row["sample_op_calls"] > 0  # a backward dispatches more than its forward
    assert all(p.grad is None for p in net.parameters())  # the optimiser step cleared them
    assert torch.is_grad_enabled()


def test_the_batch_sweep_scales_both_batches():
    load = _base_workload()
    rows = batch_sweep(load, bar=lambda: 100.0, repeats=1, factors=(1, 4))
    assert [(r["train_batch"], r["sample_batch"]) for r in rows] == [(2, 1), (8, 4)]
    assert all(r["train_mfu"] > 0 and r["sample_mfu"] > 0 for r in rows)


def test_a_twin_workload_trains_its_own_copy_of_the_net_on_the_same_inputs():
    load = _base_workload()
    twin = load.with_net(copy.deepcopy(load.net).to(memory_format=torch.channels_last))
    before = [p.detach().clone() for p in load.net.parameters()]
    for p in twin.net.parameters():  # the zero-initialised output layers would leave a first step's update at 0
        torch.nn.init.normal_(p, std=0.1)
    twin_before = twin.net.out_conv.weight.detach().clone()
    twin.train_step()
    assert all(torch.equal(a, b) for a, b in zip(before, load.net.parameters(), strict=True))
    assert not torch.equal(twin_before, twin.net.out_conv.weight)
    assert twin.train_inputs is load.train_inputs and twin.optimizer is not load.optimizer
    assert twin.net.in_conv.weight.is_contiguous(memory_format=torch.channels_last)
    twin.sample_forward()
