"""Inpainting by known-region replacement (Song et al. 2021, appendix; Lugmayr et al. 2022, "RePaint", eq. 8):
before every network evaluation at level t, the pixels to keep (mask 0) of x_t are replaced by the original
image noised to t with fresh noise, x_t <- mask x_t + (1 - mask) q_sample(original, t); the result is
composited the same way at t = 0, so kept pixels equal the original.

The replacement wraps the denoiser, so every sampler runs unchanged: their updates act pixel by pixel given
the x0 prediction, so the regenerated pixels evolve exactly as if the state itself had been replaced.

RePaint resampling (`resample_steps` U > 1): every step but the last is done U times; between two tries the
state jumps back from s to t by the forward process q(x_t | x_s) (fresh noise), so the regenerated region is
harmonised with the kept one. Each step then runs as a one-step call of the sampler (DPM-Solver++ restarts
its multistep history, i.e. acts as DDIM); a run costs (N - 1) U + 1 network evaluations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..noise import Generator, randn
from ..objective import q_sample
from ..samplers.common import DenoiseFn, Level, levels
from ..schedules import Schedule


def replace_known(x_t: torch.Tensor, t: torch.Tensor, original: torch.Tensor, mask: torch.Tensor,
                  schedule: Schedule, generator: Generator) -> torch.Tensor:
    """x_t (B, 3, R, R) at times t (B,) with its kept pixels (mask 0; mask (B or 1, 1, R, R)) replaced by
    `original` (B or 1, 3, R, R) in [-1, 1] noised to t with fresh noise from `generator`."""
    eps = randn(x_t.shape, generator, device=x_t.device, dtype=x_t.dtype)
    alpha, sigma = schedule.alpha_sigma(t.double())
    known = q_sample(original.expand_as(x_t), alpha.to(x_t.dtype), sigma.to(x_t.dtype), eps)
    return mask * x_t + (1.0 - mask) * known


def known_region_denoise(denoise: DenoiseFn, original: torch.Tensor, mask: torch.Tensor, schedule: Schedule,
                         generator: Generator) -> DenoiseFn:
    """`denoise(x_t, t) -> x0` that sees x_t with the kept region replaced (see `replace_known`)."""
    mask, original = mask.float(), original.float()

    def inpainting_denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return denoise(replace_known(x_t, t, original.to(x_t.device), mask.to(x_t.device), schedule, generator), t)

    return inpainting_denoise


def jump_back(x_s: torch.Tensor, s: Level, t: Level, noise: torch.Tensor) -> torch.Tensor:
    """A draw of x_t ~ q(x_t | x_s) for s < t: (alpha_t / alpha_s) x_s + sigma_{t|s} noise, with
    sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2 (VDM eq. 3; RePaint algorithm 1, line 13)."""
    ratio = t.alpha / s.alpha
    return ratio * x_s + max(t.sigma ** 2 - (ratio * s.sigma) ** 2, 0.0) ** 0.5 * noise


def resample(sampler: Callable, denoise: DenoiseFn, x: torch.Tensor, timesteps: torch.Tensor, *, schedule: Schedule,
             resample_steps: int, x0_fn: Callable | None = None, generator: Generator = None,
             callback: Callable | None = None) -> torch.Tensor:
    """RePaint's loop around any sampler: from `x` at timesteps[0] to the final x0, each step but the last
    `resample_steps` times with a jump back in between."""
    if resample_steps < 1:
        raise ValueError(f"resample_steps must be >= 1, got {resample_steps}")
    grid = levels(timesteps, schedule)
    for i in range(len(timesteps) - 1):
        tries = 1 if i == len(timesteps) - 2 else resample_steps
        for attempt in range(tries):
            x_s = sampler(denoise, x, timesteps[i:i + 2], schedule=schedule, x0_fn=x0_fn, generator=generator,
                          callback=callback)
            if attempt < tries - 1:
                x = jump_back(x_s, grid[i + 1], grid[i], randn(x.shape, generator, device=x.device, dtype=x.dtype))
        x = x_s
    return x


def composite(x0: torch.Tensor, original: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The result: regenerated pixels from x0, kept ones from the original, clamped to [-1, 1]."""
    mask = mask.to(x0.device, x0.dtype)
    return (mask * x0 + (1.0 - mask) * original.to(x0.device, x0.dtype)).clamp(-1.0, 1.0)
