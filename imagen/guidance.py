"""Classifier-free guidance (Ho & Salimans 2022; Imagen section 2.2) as a wrapper around the denoiser.

One forward on the doubled batch (cond || uncond), then x0 = uncond + w (cond - uncond). The network
output, x0 and eps are affine in each other given x_t, so guiding x0 equals guiding eps or v.
w = 1 is the conditional model alone (one plain forward), w = 0 the unconditional one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .denoiser import Condition, Denoiser
from .samplers.common import DenoiseFn

GuidanceScale = float | Callable[[torch.Tensor], torch.Tensor]


def linear_guidance(start: float, end: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A guidance scale that moves linearly from `start` at t = 1 (pure noise) to `end` at t = 0."""
    return lambda t: end + (start - end) * t


def guided(denoiser: Denoiser, condition: Condition, guidance_scale: GuidanceScale = 1.0,
           negative: Condition | None = None) -> DenoiseFn:
    """`denoise(x_t, t) -> x0` for the samplers. `negative`, if given, replaces the null condition
    (a negative prompt's embedding); `guidance_scale` is a float or a function of t (B,) -> (B,)."""
    uncond = negative if negative is not None else condition.unconditional()
    constant = not callable(guidance_scale)
    if constant and guidance_scale in (0.0, 1.0):
        predict = denoiser.bind(condition if guidance_scale == 1.0 else uncond)
        return lambda x_t, t: predict(x_t, t).x0
    predict = denoiser.bind(condition.cat(uncond))

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0_cond, x0_uncond = predict(torch.cat([x_t, x_t]), torch.cat([t, t])).x0.chunk(2)
        w = guidance_scale(t) if not constant else torch.full_like(t, guidance_scale)
        w = w.reshape(-1, *([1] * (x_t.ndim - 1))).to(x0_cond.dtype)
        return x0_uncond + w * (x0_cond - x0_uncond)

    return denoise
