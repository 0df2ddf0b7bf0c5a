"""The paper presets carry the paper's recipe (Saharia et al. 2022, section 4.1 and appendix F; DESIGN.md): what
a full-size run trains with. Values the paper does not give are stated in the preset files with their reason."""

from __future__ import annotations

import pytest

from configs import load_config


@pytest.mark.parametrize("preset, stage, optimizer, betas, schedule", [
    ("imagen-base-64", "base", "adafactor", (0.0, 0.999), "cosine"),
    ("imagen-sr-256", "sr1", "adamw", (0.9, 0.999), "cosine"),
    ("imagen-sr-1024", "sr2", "adamw", (0.9, 0.999), "linear"),
])
def test_paper_training_recipe(preset, stage, optimizer, betas, schedule):
    config = load_config(preset)
    assert config.text.name == "google/t5-v1_1-xxl" and config.text.max_length == 128
    stage_config = getattr(config, stage)
    train = stage_config.train
    assert (train.batch_size, train.lr, train.warmup_steps, train.lr_schedule, train.max_steps) == \
        (2048, 1e-4, 10000, "constant", 2_500_000)
    assert (train.optimizer, tuple(train.betas), train.weight_decay, train.caption_drop_prob) == \
        (optimizer, betas, 0.0, 0.1)
    assert stage_config.schedule.kind == schedule and stage_config.objective.prediction == "eps"
    assert load_config("imagen-cascade").stages()[stage] == stage_config


def test_adafactor_without_momentum_keeps_no_first_moment():
    import torch

    from configs import TrainConfig
    from trainers.optim import build_optimizer

    weight = torch.nn.Parameter(torch.randn(4, 4))
    optimizer = build_optimizer([weight], TrainConfig(optimizer="adafactor", betas=(0.0, 0.999)))
    weight.grad = torch.randn(4, 4)
    optimizer.step()
    assert "exp_avg" not in optimizer.state[weight]
    assert optimizer.param_groups[0]["beta1"] is None
