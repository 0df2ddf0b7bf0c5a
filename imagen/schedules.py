"""Continuous-time noise schedules (Kingma et al. 2021, VDM; Imagen section 2 and appendix).

A schedule maps t in [0, 1] to a log signal-to-noise ratio log_snr(t) = log(alpha^2 / sigma^2), strictly
decreasing, with the variance-preserving alpha^2 = sigmoid(log_snr), sigma^2 = sigmoid(-log_snr).
Clipping to [logsnr_min, logsnr_max] is done by rescaling t onto the sub-interval of the unclipped
schedule that spans those values, so the clipped schedule stays smooth and exactly invertible.
"""

from __future__ import annotations

import math

import torch

from configs import ScheduleConfig


def _cosine_log_snr(t: torch.Tensor) -> torch.Tensor:
    # alpha = cos(pi t / 2), sigma = sin(pi t / 2)  =>  log_snr = -2 log tan(pi t / 2)  (Nichol & Dhariwal 2021)
    return -2.0 * torch.log(torch.tan(0.5 * math.pi * t))


def _cosine_t(log_snr: torch.Tensor) -> torch.Tensor:
    return (2.0 / math.pi) * torch.atan(torch.exp(-0.5 * log_snr))


def _linear_log_snr(t: torch.Tensor) -> torch.Tensor:
    # continuous DDPM linear betas (beta from 0.1 to 20 in VP-SDE units): log_snr = -log(expm1(1e-4 + 10 t^2))
    return -torch.log(torch.expm1(1e-4 + 10.0 * t * t))


def _linear_t(log_snr: torch.Tensor) -> torch.Tensor:
    # softplus(-log_snr) = log(1 + exp(-log_snr)) = 1e-4 + 10 t^2
    return torch.sqrt(((torch.nn.functional.softplus(-log_snr) - 1e-4) / 10.0).clamp_min(0.0))


_KINDS = {"cosine": (_cosine_log_snr, _cosine_t), "linear": (_linear_log_snr, _linear_t)}


class Schedule:
    """log-SNR schedule over t in [0, 1]: t = 0 is (almost) clean data, t = 1 (almost) pure noise."""

    def __init__(self, config: ScheduleConfig | None = None):
        config = config or ScheduleConfig()
        if config.kind not in _KINDS:
            raise ValueError(f"unknown schedule kind {config.kind!r}; valid: {', '.join(_KINDS)}")
        self.config = config
        self._log_snr, self._t = _KINDS[config.kind]
        # the configured range, within what the kind reaches over t in [0, 1] (linear: [-10.0, 9.21]), so t is
        # never stretched beyond the schedule and both ends are reached
        native_min, native_max = (float(v) for v in self._log_snr(torch.tensor([1.0, 0.0], dtype=torch.float64)))
        self.logsnr_min, self.logsnr_max = max(config.logsnr_min, native_min), min(config.logsnr_max, native_max)
        if self.logsnr_min >= self.logsnr_max:
            raise ValueError(f"the {config.kind} schedule spans log-SNR [{native_min:.2f}, {native_max:.2f}], outside "
                             f"the configured [{config.logsnr_min}, {config.logsnr_max}]")
        bounds = torch.tensor([self.logsnr_max, self.logsnr_min], dtype=torch.float64)
        self.t_min, self.t_max = (float(v) for v in self._t(bounds))

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """log(alpha^2 / sigma^2) at t, strictly decreasing from logsnr_max (t=0) to logsnr_min (t=1)."""
        t64 = t.double()
        return self._log_snr(self.t_min + t64 * (self.t_max - self.t_min)).to(_float_dtype(t))

    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """Inverse of `log_snr`; values outside the clipped range map to the ends of [0, 1]."""
        raw = self._t(log_snr.double())
        return ((raw - self.t_min) / (self.t_max - self.t_min)).clamp(0.0, 1.0).to(_float_dtype(log_snr))

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signal and noise scales at t (variance preserving: alpha^2 + sigma^2 = 1)."""
        return alpha_sigma_from_log_snr(self.log_snr(t))

    def __repr__(self) -> str:
        return f"Schedule({self.config.kind}, log_snr in [{self.logsnr_min:g}, {self.logsnr_max:g}])"


def alpha_sigma_from_log_snr(log_snr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def _float_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.is_floating_point() else torch.get_default_dtype()
