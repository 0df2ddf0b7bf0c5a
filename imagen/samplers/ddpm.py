"""DDPM ancestral sampling (Ho et al. 2020), continuous-time form (Kingma et al. 2021, appendix A).

From t to s < t: x_s ~ q(x_s | x_t, x0 = x0_hat), the Gaussian posterior with
mean = (alpha_s / alpha_t)(1 - c) x_t + alpha_s c x0_hat, variance = c sigma_s^2, c = 1 - SNR_t / SNR_s.
"""

from __future__ import annotations

import torch

from ..noise import Generator, randn
from ..schedules import Schedule
from .common import Callback, DenoiseFn, Level, X0Fn, integrate, posterior_fraction


def step(x: torch.Tensor, x0: torch.Tensor, t: Level, s: Level, noise: torch.Tensor) -> torch.Tensor:
    c = posterior_fraction(t, s)
    mean = (s.alpha / t.alpha) * (1.0 - c) * x + s.alpha * c * x0
    return mean + (c ** 0.5) * s.sigma * noise


def sample(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
           x0_fn: X0Fn | None = None, generator: Generator = None, callback: Callback | None = None
           ) -> torch.Tensor:
    def update(i, x, x0, t, s):
        return step(x, x0, t, s, randn(x.shape, generator, device=x.device, dtype=x.dtype))

    return integrate(update, denoise, x_T, timesteps, schedule, x0_fn, callback)
