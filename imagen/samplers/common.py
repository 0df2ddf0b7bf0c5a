"""What every sampler shares: the per-step scalars of the schedule, x0 evaluation, step callbacks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..schedules import Schedule

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
X0Fn = Callable[[torch.Tensor], torch.Tensor]
# callback(step_index, t, x_t, x0_prediction), called once per network evaluation
Callback = Callable[[int, float, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class Level:
    """The schedule at one time: t, alpha, sigma, and lam = log(alpha / sigma) = log_snr / 2."""

    t: float
    alpha: float
    sigma: float
    lam: float


def levels(timesteps: torch.Tensor, schedule: Schedule) -> list[Level]:
    """Schedule values at each grid time, computed in float64."""
    t = timesteps.double()
    log_snr = schedule.log_snr(t)
    alpha, sigma = torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()
    return [Level(float(a), float(b), float(c), float(d) / 2)
            for a, b, c, d in zip(t, alpha, sigma, log_snr, strict=True)]


def predict_x0(denoise: DenoiseFn, x: torch.Tensor, level: Level, x0_fn: X0Fn | None) -> torch.Tensor:
    """The (thresholded) x0 prediction at x_t."""
    t = torch.full((x.shape[0],), level.t, dtype=torch.float32, device=x.device)
    x0 = denoise(x, t)
    return x0_fn(x0) if x0_fn is not None else x0


# update(i, x_t, x0, t, s) -> x_s: one step of a sampler from grid level t to the next level s
Update = Callable[[int, torch.Tensor, torch.Tensor, Level, Level], torch.Tensor]


def integrate(update: Update, denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor,
              schedule: Schedule, x0_fn: X0Fn | None, callback: Callback | None) -> torch.Tensor:
    """The loop every sampler shares: one (thresholded) x0 prediction per step, then `update`.
    A grid ending at t = 0 (the clean end) returns the last x0 prediction, the limit of any step onto
    sigma = 0; a grid ending earlier returns x at its last level (the noise left there is sigma / alpha)."""
    check_grid(timesteps)
    grid = levels(timesteps, schedule)
    x = x_T
    for i, (t, s) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
        x0 = predict_x0(denoise, x, t, x0_fn)
        if callback is not None:
            callback(i, t.t, x, x0)
        if s.t == 0.0:
            return x0
        x = update(i, x, x0, t, s)
    return x


def check_grid(timesteps: torch.Tensor) -> None:
    if timesteps.ndim != 1 or len(timesteps) < 2:
        raise ValueError("timesteps must be a 1-D tensor of at least 2 times, from t=1 down to t=0")
    if not bool((timesteps[1:] < timesteps[:-1]).all()):
        raise ValueError("timesteps must be strictly decreasing (from noise at t=1 to data at t=0)")


def eps_from_x0(x: torch.Tensor, x0: torch.Tensor, level: Level) -> torch.Tensor:
    return (x - level.alpha * x0) / level.sigma


def posterior_fraction(t: Level, s: Level) -> float:
    """c = sigma_{t|s}^2 / sigma_t^2 = 1 - exp(log_snr_t - log_snr_s), in [0, 1] for s < t."""
    return -math.expm1(2 * (t.lam - s.lam))
