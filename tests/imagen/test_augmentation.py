"""Noise-conditioning augmentation: exact values on small tensors, and one function shared by the training
loss (random levels) and sampling (a fixed level) of a super-resolution stage."""

from __future__ import annotations

import pytest
import torch

import imagen.stage
from configs import ScheduleConfig
from imagen.augmentation import fixed_levels, noise_augment, training_levels
from imagen.options import SamplingOptions
from imagen.resize import upsample
from imagen.schedules import Schedule
from imagen.stage import draw_training_noise

pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(batch=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    eps = torch.randn(batch, 3, size, size, generator=g)
    return x, eps


def test_level_zero_is_almost_the_identity_and_level_one_almost_pure_noise():
    schedule = Schedule(ScheduleConfig())  # log-SNR 20 at level 0, -20 at level 1
    x, eps = _inputs()
    clean = noise_augment(x, torch.zeros(4), schedule, eps)
    noise = noise_augment(x, torch.ones(4), schedule, eps)
    torch.testing.assert_close(clean, x, atol=1e-3, rtol=0)
    torch.testing.assert_close(noise, eps, atol=1e-3, rtol=0)


def test_is_alpha_x_plus_sigma_eps_per_sample_and_variance_preserving():
    schedule = Schedule(ScheduleConfig())
    x, eps = _inputs()
    level = torch.tensor([0.0, 0.1, 0.5, 0.9])
    alpha, sigma = schedule.alpha_sigma(level)
    out = noise_augment(x, level, schedule, eps)
    torch.testing.assert_close(out, alpha[:, None, None, None] * x + sigma[:, None, None, None] * eps)
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(4))
    assert bool((alpha[1:] < alpha[:-1]).all())  # more noise, less signal, as the level grows
    # the correlation with the clean image falls as the level grows
    corr = [torch.corrcoef(torch.stack([x[0].flatten(), noise_augment(x, torch.full((4,), a), schedule,
                                                                       eps)[0].flatten()]))[0, 1]
            for a in (0.0, 0.3, 0.6, 0.9)]
    assert corr == sorted(corr, reverse=True) and corr[0] > 0.99 and corr[-1] < 0.5


def test_training_levels_are_uniform_below_the_maximum_and_seeded():
    a = training_levels(1000, 0.5, torch.Generator().manual_seed(0))
    b = training_levels(1000, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 0.5
    assert abs(float(a.mean()) - 0.25) < 0.02


def test_fixed_levels_are_checked():
    assert torch.equal(fixed_levels(3, 0.2), torch.full((3,), 0.2))
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match=r"augmentation level must be in \[0, 1\]"):
            fixed_levels(2, bad)


@pytest.fixture
def spy(monkeypatch):
    """Records every call of noise_augment made by imagen.stage (training and sampling)."""
    calls = []

    def recording(lowres, level, schedule, eps):
        calls.append({"lowres": lowres.clone(), "level": level.clone(), "schedule": schedule})
        return noise_augment(lowres, level, schedule, eps)

    monkeypatch.setattr(imagen.stage, "noise_augment", recording)
    return calls


def test_one_function_augments_in_training_and_in_sampling(tiny_pipe, spy):
    stage = tiny_pipe.stages["sr1"]
    embeds, mask = tiny_pipe.encode_prompts(["a red circle", "a blue square"])
    lowres = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1

    noise = draw_training_noise(stage.config, 2, 32, torch.Generator().manual_seed(2))
    loss = stage.training_loss(images, embeds, mask, noise, lowres)
    assert loss.shape == (2,) and bool(loss.isfinite().all())
    assert len(spy) == 1
    trained = spy[0]
    torch.testing.assert_close(trained["level"], noise.aug_level)
    assert float(trained["level"].max()) <= stage.config.noise_aug.train_max_level

    stage.sample(embeds, mask, torch.Generator().manual_seed(3), SamplingOptions(aug_level=0.25, num_steps=2),
                 lowres=lowres)
    assert len(spy) == 2
    sampled = spy[1]
    torch.testing.assert_close(sampled["level"], torch.full((2,), 0.25))
    # both sides augment the same antialiased bicubic upsampling of the low-res image, on the stage's schedule
    torch.testing.assert_close(trained["lowres"], upsample(lowres, 32))
    torch.testing.assert_close(sampled["lowres"], upsample(lowres, 32))
    assert trained["schedule"] is sampled["schedule"] is stage.schedule


def test_pipeline_augments_each_sr_stage_at_its_own_level(tiny_pipe, spy):
    out = tiny_pipe.generate(["a red circle"], aug_level=[0.05, 0.3], num_inference_steps=2, guidance_scale=1.0,
                             progress=False)
    assert [float(c["level"][0]) for c in spy] == pytest.approx([0.05, 0.3])
    # sr1 augments the upsampled base output, sr2 the upsampled sr1 output
    torch.testing.assert_close(spy[0]["lowres"], upsample(out["base"], 32))
    torch.testing.assert_close(spy[1]["lowres"], upsample(out["sr1"], 64))
    tiny_pipe.generate(["a red circle"], num_inference_steps=2, guidance_scale=1.0, progress=False)
    defaults = [tiny_pipe.config.sr1.noise_aug.sample_level, tiny_pipe.config.sr2.noise_aug.sample_level]
    assert [float(c["level"][0]) for c in spy[2:]] == pytest.approx(defaults)
