"""Time grids for sampling: N + 1 decreasing times from where x_T is drawn towards t = 0 (data); N network calls.

x_T is drawn at t = 1, except for ε-prediction: its first x0 estimate (x - sigma eps) / alpha multiplies the
network's error by sigma / alpha, e^10 = 22,000 at the cosine schedule's t = 1 (log-SNR -20) against e^4 = 55 at
log-SNR -8, where N(0, I) is still x_t's marginal within 4e-4 in variance; so ε-prediction grids start there
(`bench/samplers.py --sections conditioning` measures both starts on ε, v and x0 objectives)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..schedules import Schedule


def uniform_t(num_steps: int, schedule: Schedule, first: float = 1.0) -> torch.Tensor:
    """Evenly spaced in t from `first` (DDPM / DDIM convention)."""
    return torch.linspace(first, 0.0, num_steps + 1, dtype=torch.float64)


# The log-SNR span where sampling does work: below -8, x_t's marginal differs from N(0, I) by < 4e-4
# in variance, so x_T is drawn there; at 10 the noise left (sigma / alpha = 0.0067) is under one 8-bit
# level of an image in [-1, 1], so the x0 predicted there is the sample (the step onto t = 0).
LOGSNR_START, LOGSNR_END = -8.0, 10.0


def uniform_log_snr(num_steps: int, schedule: Schedule, first: float = 1.0) -> torch.Tensor:
    """N levels evenly spaced in log-SNR from LOGSNR_START to LOGSNR_END (within the schedule's range),
    then t = 0 (DPM-Solver's 'logSNR' spacing); x_T is drawn at `first`."""
    start, end = max(schedule.logsnr_min, LOGSNR_START), min(schedule.logsnr_max, LOGSNR_END)
    levels = schedule.t_from_log_snr(torch.linspace(start, end, num_steps, dtype=torch.float64))
    return _ending_at_zero(levels, first)


def karras(num_steps: int, schedule: Schedule, first: float = 1.0, sigma_min: float = 0.002, sigma_max: float = 80.0,
           rho: float = 7.0) -> torch.Tensor:
    """EDM spacing (Karras et al. 2022, eq. 5): N noise levels rho-spaced in the VE sigma = sigma / alpha =
    exp(-log_snr / 2) between sigma_max (at most the level of `first`) and sigma_min (within the schedule's
    range), then t = 0."""
    first_log_snr = float(schedule.log_snr(torch.tensor([first], dtype=torch.float64))[0])
    hi = min(sigma_max, math.exp(-schedule.logsnr_min / 2), math.exp(-first_log_snr / 2))
    lo = max(sigma_min, math.exp(-schedule.logsnr_max / 2))
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
    sigmas = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    levels = schedule.t_from_log_snr(-2.0 * sigmas.log())
    return _ending_at_zero(levels, first)


def _ending_at_zero(levels: torch.Tensor, first: float) -> torch.Tensor:
    """N decreasing levels -> the N + 1 times of a grid: `first` first (x_T is drawn there), t = 0 last. A last
    level already at t = 0 (a schedule whose clean end is below LOGSNR_END, e.g. the linear one at 9.21) is
    moved halfway to the level before it, so the grid stays strictly decreasing."""
    t = levels.clone()
    t[0] = first
    if len(t) > 1 and t[-1] <= 0.0:
        t[-1] = t[-2] / 2
    return torch.cat([t, t.new_zeros(1)])


TIME_GRIDS: dict[str, Callable[..., torch.Tensor]] = {  # keys: configs.TIME_GRID_NAMES
    "uniform": uniform_t,
    "logsnr": uniform_log_snr,
    "karras": karras,
}


def first_time(schedule: Schedule, prediction: str = "v") -> float:
    """Where a grid draws x_T: t = 1, or for ε-prediction the time of log-SNR LOGSNR_START (see above)."""
    if prediction != "eps" or schedule.logsnr_min >= LOGSNR_START:
        return 1.0
    return float(schedule.t_from_log_snr(torch.tensor([LOGSNR_START], dtype=torch.float64))[0])


def time_grid(kind: str, num_steps: int, schedule: Schedule, prediction: str = "v") -> torch.Tensor:
    """The grid `kind` of `num_steps` steps for a stage whose network predicts `prediction`."""
    if num_steps < 1:
        raise ValueError(f"number of sampling steps must be >= 1, got {num_steps}")
    if kind not in TIME_GRIDS:
        raise ValueError(f"unknown time grid {kind!r}; valid: {', '.join(TIME_GRIDS)}")
    return TIME_GRIDS[kind](num_steps, schedule, first_time(schedule, prediction))
