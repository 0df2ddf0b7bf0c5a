"""Probe of a super-resolution stage: does its x0 prediction keep the low-res input's colour when the noise is
high? The sampler fixes an image's colours in its first, noisiest steps, so an error there stays in the output.

Each palette colour is given as a flat low-res image (augmented at the stage's sampling level, with a caption
naming it); a flat image of that colour is noised to each probed time and the stage predicts x0. The error is
the distance (RGB levels) between the mean colour of that prediction and the input's colour.
"""

from __future__ import annotations

import torch

from imagen.augmentation import noise_augment
from imagen.denoiser import Condition
from imagen.objective import q_sample
from imagen.resize import upsample
from imagen.shapes import COLORS

PROBE_TIMES = {"t=0.99": ("t", 0.99), "log_snr=-3.7": ("log_snr", -3.7), "log_snr=0": ("log_snr", 0.0),
               "log_snr=3.7": ("log_snr", 3.7)}


@torch.no_grad()
def high_noise_color_error(pipe, stage_name: str, seed: int = 0,
                           times: tuple[str, ...] = tuple(PROBE_TIMES)) -> dict[str, float]:
    """{probed time: mean over the palette of |mean colour of x0 - input colour|, in 0-255 levels} for SR stage
    `stage_name` of `pipe` (an imagen.Imagen), at `times` (keys of PROBE_TIMES)."""
    stage = pipe.stages[stage_name]
    if not stage.config.is_super_resolution:
        raise ValueError(f"stage {stage_name} is not a super-resolution stage")
    device = pipe.device
    colors = torch.tensor(list(COLORS.values()), dtype=torch.float32, device=device) / 127.5 - 1.0  # (K, 3)
    embeds, mask = pipe.encode_prompts([f"a small {name} circle at the center on a {name} background"
                                        for name in COLORS])
    side, low = stage.resolution, stage.config.lowres_resolution
    upsampled = upsample(colors[:, :, None, None].expand(-1, -1, low, low), side)
    batch = len(colors)
    level = torch.full((batch,), float(stage.config.noise_aug.sample_level), device=device)
    generator = torch.Generator(device.type).manual_seed(seed)
    aug = noise_augment(upsampled, level, stage.schedule,
                        torch.randn(upsampled.shape, generator=generator, device=device))
    anchor = upsampled if stage.config.objective.lowres_residual else None
    condition = Condition(embeds, mask, None, aug, level, anchor)
    eps = torch.randn(upsampled.shape, generator=generator, device=device)
    errors = {}
    for label in times:
        kind, value = PROBE_TIMES[label]
        t = torch.tensor(value) if kind == "t" else stage.schedule.t_from_log_snr(torch.tensor(value))
        t = t.float().expand(batch).to(device)
        alpha, sigma = stage.schedule.alpha_sigma(t)
        x_t = q_sample(upsampled, alpha, sigma, eps)
        x0 = stage.denoiser(x_t, t, condition).x0.clamp(-1.0, 1.0)
        errors[label] = float(((x0.mean(dim=(2, 3)) - colors) * 127.5).norm(dim=1).mean())
    return errors
