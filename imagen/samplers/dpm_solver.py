"""DPM-Solver++ multistep, data prediction (Lu et al. 2022, "DPM-Solver++", algorithm 2 and appendix).

In lam = log(alpha / sigma), with h = lam_s - lam_t and the last x0 predictions m0 (at t), m1, m2:
  1st order: x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) m0            (= DDIM)
  2nd order: + correction -0.5 alpha_s (e^{-h} - 1) D1, D1 = (m0 - m1) / r0, r0 = h_prev / h
  3rd order: the diffusers `multistep_dpm_solver_third_order_update` form.
Thresholding applies to each x0 prediction before it enters the multistep history, so dynamic
thresholding and guidance work together. A grid ending at t = 0 returns the last x0 prediction (the
first-order step onto sigma = 0; a high-order one would extrapolate wildly over the infinite final h).
"""

from __future__ import annotations

import math

import torch

from ..noise import Generator
from ..schedules import Schedule
from .common import Callback, DenoiseFn, Level, X0Fn, integrate


def step(x: torch.Tensor, history: list[torch.Tensor], lams: list[float], t: Level, s: Level) -> torch.Tensor:
    """One multistep update from t to s. history: x0 predictions, newest first (m0, m1, m2);
    lams: the lam of each of them (lam_t, lam_prev, lam_prev2). The order is len(history)."""
    h = s.lam - t.lam
    phi_1 = math.expm1(-h)  # e^{-h} - 1
    m0 = history[0]
    x_s = (s.sigma / t.sigma) * x - s.alpha * phi_1 * m0
    if len(history) == 1:
        return x_s
    r0 = (lams[0] - lams[1]) / h
    d1_0 = (m0 - history[1]) / r0
    if len(history) == 2:
        return x_s - 0.5 * s.alpha * phi_1 * d1_0
    r1 = (lams[1] - lams[2]) / h
    d1_1 = (history[1] - history[2]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi_2 = phi_1 / h + 1.0
    phi_3 = phi_2 / h - 0.5
    return x_s + s.alpha * phi_2 * d1 - s.alpha * phi_3 * d2


def sample(denoise: DenoiseFn, x_T: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
           x0_fn: X0Fn | None = None, generator: Generator = None, callback: Callback | None = None,
           order: int = 2) -> torch.Tensor:
    """Deterministic: `generator` is accepted for the shared signature and unused."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")
    history: list[torch.Tensor] = []
    lams: list[float] = []

    def update(i, x, x0, t, s):
        history.insert(0, x0)
        lams.insert(0, t.lam)
        del history[order:], lams[order:]
        return step(x, history, lams, t, s)

    return integrate(update, denoise, x_T, timesteps, schedule, x0_fn, callback)
