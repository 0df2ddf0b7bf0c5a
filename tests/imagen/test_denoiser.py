"""The denoiser seam, and its residual form for SR stages that diffuse x0 - anchor."""

from __future__ import annotations

import pytest
import torch

from configs import ScheduleConfig
from imagen.denoiser import Condition, Denoiser
from imagen.objective import q_sample, target
from imagen.schedules import Schedule


class Oracle(torch.nn.Module):
    """Predicts `prediction` exactly for data that is always `x0` (so the denoiser must return x0 itself)."""

    def __init__(self, x0: torch.Tensor, schedule: Schedule, prediction: str):
        super().__init__()
        self.x0, self.schedule, self.prediction = x0, schedule, prediction

    def forward(self, x_t, t, **condition):
        alpha, sigma = self.schedule.alpha_sigma(t)
        a, s = alpha[:, None, None, None], sigma[:, None, None, None]
        eps = (x_t - a * self.x0) / s
        return target(self.prediction, self.x0, eps, alpha, sigma)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_residual_denoiser_returns_anchor_plus_residual_and_the_image_space_eps(prediction):
    schedule = Schedule(ScheduleConfig())
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1
    anchor = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1
    eps = torch.randn(2, 3, 8, 8, generator=generator)
    t = torch.tensor([0.3, 0.8])
    alpha, sigma = schedule.alpha_sigma(t)
    x_t = q_sample(image, alpha, sigma, eps)  # the sampler's state is an image-space x_t
    denoiser = Denoiser(Oracle(image - anchor, schedule, prediction), schedule, prediction)
    out = denoiser(x_t, t, Condition(anchor=anchor))
    torch.testing.assert_close(out.x0, image, atol=1e-4, rtol=0)
    torch.testing.assert_close(out.eps, eps, atol=1e-4, rtol=0)


def test_the_anchor_is_not_passed_to_the_network():
    assert "anchor" not in Condition(anchor=torch.zeros(1, 3, 2, 2)).as_kwargs()


def test_guidance_batches_the_anchor_with_the_rest():
    a = Condition(torch.ones(1, 2, 4), torch.ones(1, 2, dtype=torch.bool), lowres=torch.zeros(1, 3, 2, 2),
                  lowres_level=torch.zeros(1), anchor=torch.ones(1, 3, 2, 2))
    both = a.cat(a.unconditional())
    assert both.anchor.shape == (2, 3, 2, 2)
