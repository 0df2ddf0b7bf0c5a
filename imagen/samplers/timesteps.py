"""Time grids for sampling: N + 1 decreasing times from t = 1 (where x_T is drawn) towards t = 0 (data);
N network calls."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..schedules import Schedule


def uniform_t(num_steps: int) -> torch.Tensor:
    """Evenly spaced in t (DDPM / DDIM convention)."""
    return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)


# The log-SNR span where sampling does work: below -8, x_t's marginal differs from N(0, I) by < 4e-4
# in variance, so x_T is drawn there; at 10 the noise left (sigma / alpha = 0.0067) is under one 8-bit
# level of an image in [-1, 1], so the x0 predicted there is the sample (the step onto t = 0).
LOGSNR_START, LOGSNR_END = -8.0, 10.0


def uniform_log_snr(num_steps: int, schedule: Schedule) -> torch.Tensor:
    """N levels evenly spaced in log-SNR from LOGSNR_START to LOGSNR_END (within the schedule's range),
    then t = 0 (DPM-Solver's 'logSNR' spacing)."""
    start, end = max(schedule.logsnr_min, LOGSNR_START), min(schedule.logsnr_max, LOGSNR_END)
    return _ending_at_zero(schedule.t_from_log_snr(torch.linspace(start, end, num_steps, dtype=torch.float64)))


def karras(num_steps: int, schedule: Schedule, sigma_min: float = 0.002, sigma_max: float = 80.0,
           rho: float = 7.0) -> torch.Tensor:
    """EDM spacing (Karras et al. 2022, eq. 5): N noise levels rho-spaced in the VE sigma = sigma / alpha =
    exp(-log_snr / 2) between sigma_max and sigma_min (within the schedule's range), then t = 0."""
    hi = min(sigma_max, math.exp(-schedule.logsnr_min / 2))
    lo = max(sigma_min, math.exp(-schedule.logsnr_max / 2))
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return _ending_at_zero(schedule.t_from_log_snr(-2.0 * sigmas.log()))


def _ending_at_zero(levels: torch.Tensor) -> torch.Tensor:
    """N decreasing levels -> the N + 1 times of a grid: t = 1 first (x_T is drawn there), t = 0 last. A last
    level already at t = 0 (a schedule whose clean end is below LOGSNR_END, e.g. the linear one at 9.21) is
    moved halfway to the level before it, so the grid stays strictly decreasing."""
    t = levels.clone()
    t[0] = 1.0
    if len(t) > 1 and t[-1] <= 0.0:
        t[-1] = t[-2] / 2
    return torch.cat([t, t.new_zeros(1)])


TIME_GRIDS: dict[str, Callable[[int, Schedule], torch.Tensor]] = {  # keys: configs.TIME_GRID_NAMES
    "uniform": lambda num_steps, schedule: uniform_t(num_steps),
    "logsnr": uniform_log_snr,
    "karras": karras,
}


def time_grid(kind: str, num_steps: int, schedule: Schedule) -> torch.Tensor:
    if num_steps < 1:
        raise ValueError(f"number of sampling steps must be >= 1, got {num_steps}")
    if kind not in TIME_GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; valid: {', '.join(TIME_GRIDS)}")
    return TIME_GRIDS[kind](num_steps, schedule)
