"""`imagen-train --plan`: its figures against what a reduced-width run measures on this machine."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from configs import load_config
from trainers.cli import main
from trainers.plan import activation_bytes, measure_activations, parse_memory, plan_stage


@pytest.mark.parametrize("preset, stage", [("imagen-base-64", "base"), ("imagen-sr-1024", "sr2")])
def test_extrapolated_activations_match_a_direct_measurement(preset, stage):
    config = getattr(load_config(preset), stage)
    config = replace(config, unet=replace(config.unet, channels=128, head_dim=128, cond_dim=128))  # one head
    size = config.train.crop_size or config.resolution
    for checkpointing in (False, True):
        predicted = activation_bytes(config, 64, 8, size, "fp32", checkpointing)
        direct = measure_activations(replace(config, unet=replace(config.unet, gradient_checkpointing=checkpointing)),
                                     64, 8, size, "fp32")
        assert abs(predicted - direct) / direct < 0.15, (checkpointing, predicted, direct)
    plain = measure_activations(config, 64, 8, size, "fp32")
    ckpt = measure_activations(replace(config, unet=replace(config.unet, gradient_checkpointing=True)), 64, 8, size,
                               "fp32")
    assert ckpt < plain / 2


def test_static_memory_is_what_the_optimisers_allocate():
    from configs import TrainConfig
    from trainers.optim import build_optimizer
    from unets import EfficientUNet

    config = load_config("shapes-tiny").base
    for train in (TrainConfig(optimizer="adamw"), TrainConfig(optimizer="adafactor", betas=(0.0, 0.999)),
                  TrainConfig(optimizer="adafactor", betas=(0.9, 0.999))):
        stage = replace(config, train=train)
        planned = plan_stage("base", stage, 64, 8)
        net = EfficientUNet(stage.unet, text_dim=64, lowres_cond=False)
        assert planned.parameters == sum(p.numel() for p in net.parameters())
        optimizer = build_optimizer(net.parameters(), train)
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                    if torch.is_tensor(t) and t.dim() > 0)
        assert state == planned.optimizer_bytes, train


def test_plan_prints_every_stage_and_refuses_bad_sizes(tmp_path, capsys):
    sets = ["--set", "base.unet.channels=32", "--set", "text.name=embedded"]
    assert main(["--config", "imagen-base-64", "--output", str(tmp_path / "r"), "--plan", "--gpus", "2",
                 "--gpu-memory", "40GB", *sets]) == 0
    out = capsys.readouterr().out
    assert "2 GPU(s) of 40 GiB" in out and "base:" in out and "largest batch per GPU" in out
    assert not (tmp_path / "r").exists()
    assert parse_memory("80GB") == 80 * 2**30 and parse_memory("512MiB") == 512 * 2**20
    assert main(["--config", "imagen-base-64", "--output", str(tmp_path / "r"), "--plan", "--gpu-memory", "lots",
                 *sets]) == 2
    assert "--gpu-memory 'lots'" in capsys.readouterr().err


def test_a_batch_that_does_not_fit_is_refused_before_training(tmp_path, capsys, monkeypatch):
    import imagen.io

    monkeypatch.setattr(imagen.io, "available_memory", lambda: 2**30)  # a machine with 1 GiB free
    sets = ["--set", "base.unet.channels=32", "--set", "base.train.batch_size=4096", "--set", "sr1=none",
            "--set", "sr2=none"]
    assert main(["--config", "shapes-tiny", "--output", str(tmp_path / "r"), *sets]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stage base: a training step of 4096 samples" in err and "--no-memory-check" in err
    assert not (tmp_path / "r").exists()
