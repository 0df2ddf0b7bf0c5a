"""Time grids for sampling: N + 1 decreasing times from t = 1 (noise) to t = 0 (data), N network calls."""

from __future__ import annotations

import torch

from ..schedules import Schedule

TIME_GRIDS = ("uniform", "logsnr")


def uniform_t(num_steps: int) -> torch.Tensor:
    """Evenly spaced in t (DDPM / DDIM convention)."""
    return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)


def uniform_log_snr(num_steps: int, schedule: Schedule) -> torch.Tensor:
    """Evenly spaced in log-SNR between the schedule's ends (DPM-Solver's 'logSNR' spacing)."""
    c = schedule.config
    log_snr = torch.linspace(c.logsnr_min, c.logsnr_max, num_steps + 1, dtype=torch.float64)
    t = schedule.t_from_log_snr(log_snr)
    t[0], t[-1] = 1.0, 0.0
    return t


def time_grid(kind: str, num_steps: int, schedule: Schedule) -> torch.Tensor:
    if num_steps < 1:
        raise ValueError(f"number of sampling steps must be >= 1, got {num_steps}")
    if kind == "uniform":
        return uniform_t(num_steps)
    if kind == "logsnr":
        return uniform_log_snr(num_steps, schedule)
    raise ValueError(f"unknown time grid {kind!r}; valid: {', '.join(TIME_GRIDS)}")
