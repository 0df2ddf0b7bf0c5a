"""Image-to-image (SDEdit, Meng et al. 2022): noise a given image to level t = strength of the forward process,
then run the sampler from there with the prompt. Strength 0 keeps the image; strength 1 ignores it (plain
sampling from the same noise); in between, the larger the strength, the less of the image survives. A seed
sweep at a fixed strength gives variations of one image.

The start is a grid time, so the sampler's steps stay the stage's own: the grid is cut at the first time <=
strength, and x there is q_sample(image, alpha_t, sigma_t, eps) with eps the stage's own x_T draw.
"""

from __future__ import annotations

import torch

from ..objective import q_sample
from ..schedules import Schedule


def check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1] (0 keeps the image, 1 ignores it), got {strength!r}")
    return float(strength)


def start_grid(timesteps: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a decreasing time grid (1 -> 0) that starts at its first time <= `strength`. At least the
    final time is kept; a grid of that one time alone means: no sampling, the image is the result. When a
    positive strength falls inside the grid's first step (a one-step grid, as the shapes SR stages sample), the
    tail is [strength, 0]: one step from the image noised to that level, not the image unchanged."""
    check_strength(strength)
    tail = timesteps[timesteps <= strength]
    if len(tail) == 1 and strength > 0:
        return torch.cat([tail.new_tensor([strength]), tail])
    return tail


def noised_start(image: torch.Tensor, eps: torch.Tensor, t: float, schedule: Schedule) -> torch.Tensor:
    """x_t = alpha_t image + sigma_t eps (VDM notation), shapes (B, 3, R, R) (image may have batch 1)."""
    image = image.to(eps.device, eps.dtype).expand_as(eps)
    alpha, sigma = schedule.alpha_sigma(torch.full((eps.shape[0],), t, dtype=torch.float64))
    return q_sample(image, alpha.to(eps.device, eps.dtype), sigma.to(eps.device, eps.dtype), eps)
