"""DDIM (Song et al. 2021, eq. 12): x_s = alpha_s x0 + sqrt(sigma_s^2 - sigma_eta^2) eps + sigma_eta z,
with eps recomputed from the (thresholded) x0 and sigma_eta = eta sigma_s sqrt(1 - SNR_t / SNR_s);
eta = 0 is deterministic, eta = 1 is DDPM's ancestral step."""

from __future__ import annotations

import torch

from ..noise import Generator, randn
from ..schedules import Schedule
from .common import Callback, DenoiseFn, Level, X0Fn, eps_from_x0, integrate, posterior_fraction


def step(x: torch.Tensor, x0: torch.Tensor, t: Level, s: Level, eta: float = 0.0,
         noise: torch.Tensor | None = None) -> torch.Tensor:
    eps = eps_from_x0(x, x0, t)
    sigma_eta = eta * s.sigma * posterior_fraction(t, s) ** 0.5
    out = s.alpha * x0 + max(s.sigma ** 2 - sigma_eta ** 2, 0.0) ** 0.5 * eps
    return out + sigma_eta * noise if sigma_eta > 0 else out


def sample(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
           x0_fn: X0Fn | None = None, generator: Generator = None, callback: Callback | None = None,
           eta: float = 0.0) -> torch.Tensor:
    def update(i, x, x0, t, s):
        noise = randn(x.shape, generator, device=x.device, dtype=x.dtype) if eta > 0 else None
        return step(x, x0, t, s, eta, noise)

    return integrate(update, denoise, x_T, timesteps, schedule, x0_fn, callback)
