"""The learning-rate schedule: warm-up, then constant or a cosine that ends with the run, at `max_steps` or at the
time budget, whichever comes first."""

import math

import pytest

from configs import TrainConfig
from trainers.optim import lr_factor


def test_warm_up_then_constant():
    config = TrainConfig(warmup_steps=4, max_steps=100, max_minutes=1.0)
    assert [lr_factor(s, config) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(50, config, elapsed_s=59.0) == lr_factor(99, config) == 1.0


def test_cosine_ends_at_max_steps_without_a_budget():
    config = TrainConfig(warmup_steps=10, max_steps=110, lr_schedule="cosine")
    assert lr_factor(10, config) == 1.0
    assert lr_factor(60, config, elapsed_s=1e9) == pytest.approx(0.5)  # no budget: the clock plays no part
    assert lr_factor(110, config) == lr_factor(500, config) == pytest.approx(0.0)


def test_cosine_ends_at_the_time_budget_when_it_comes_first():
    config = TrainConfig(warmup_steps=10, max_steps=10_010, max_minutes=2.0, lr_schedule="cosine")
    assert lr_factor(5, config, elapsed_s=90.0) == 0.6  # the warm-up counts steps alone
    assert lr_factor(20, config, elapsed_s=60.0) == pytest.approx(0.5)  # half the budget: half-way down
    assert lr_factor(20, config, elapsed_s=120.0) == pytest.approx(0.0)
    # the steps ahead of the clock: they decide
    assert lr_factor(7_510, config, elapsed_s=30.0) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))
