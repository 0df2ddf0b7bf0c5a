"""Noise-conditioning augmentation (Imagen section 2.5; Ho et al. 2022, "Cascaded Diffusion Models").

The low-res input of a super-resolution stage is corrupted to a level a in [0, 1] of the stage's diffusion
schedule, x_aug = alpha(a) x + sigma(a) eps, and a is given to the network. Training draws a at random per
sample, so the network learns to fix whatever the previous stage got wrong; sampling uses one fixed level
(paper: 0.1-0.3 for the best samples, 0 for the best FID). One function serves both.
"""

from __future__ import annotations

import torch

from .objective import q_sample
from .schedules import Schedule


def noise_augment(lowres: torch.Tensor, level: torch.Tensor, schedule: Schedule, eps: torch.Tensor) -> torch.Tensor:
    """lowres (B, 3, H, W) in [-1, 1], level (B,) in [0, 1], eps (B, 3, H, W) standard normal -> the
    augmented image alpha(level) lowres + sigma(level) eps."""
    alpha, sigma = schedule.alpha_sigma(level.to(lowres.device, torch.float32))
    return q_sample(lowres, alpha.to(lowres.dtype), sigma.to(lowres.dtype), eps.to(lowres.dtype))


def training_levels(batch: int, max_level: float, generator: torch.Generator | None = None,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """Random levels a ~ U(0, max_level), shape (B,)."""
    return torch.rand(batch, generator=generator, device=device) * max_level


def fixed_levels(batch: int, level: float, device: str | torch.device = "cpu") -> torch.Tensor:
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"augmentation level must be in [0, 1], got {level}")
    return torch.full((batch,), float(level), device=device)
