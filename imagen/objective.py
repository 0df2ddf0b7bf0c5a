"""The diffusion training objective: forward process, targets, conversions, per-sample loss.

Notation (VDM / Imagen): x_t = alpha_t x0 + sigma_t eps, with alpha^2 + sigma^2 = 1.
The network predicts one of eps, x0 or v = alpha eps - sigma x0 (Salimans & Ho 2022, section 4);
all three carry the same information given x_t, and `to_x0_eps` converts any of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from configs import ObjectiveConfig

PREDICTIONS = ("eps", "x0", "v")


def batch_scale(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to multiply a (B, ...) tensor."""
    return scale.reshape(scale.shape + (1,) * (like.ndim - scale.ndim))


def q_sample(x0: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = alpha x0 + sigma eps, with alpha, sigma of shape (B,)."""
    return batch_scale(alpha, x0) * x0 + batch_scale(sigma, x0) * eps


def target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor,
           sigma: torch.Tensor) -> torch.Tensor:
    """The regression target for a network that predicts `prediction`."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return batch_scale(alpha, x0) * eps - batch_scale(sigma, x0) * x0
    raise ValueError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")


def to_x0_eps(prediction: str, output: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor,
              sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output of kind `prediction` at x_t into (x0, eps)."""
    a, s = batch_scale(alpha, x_t), batch_scale(sigma, x_t)
    if prediction == "eps":
        return (x_t - s * output) / a, output
    if prediction == "x0":
        return output, (x_t - a * output) / s
    if prediction == "v":
        # alpha^2 + sigma^2 = 1: x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v
        return a * x_t - s * output, s * x_t + a * output
    raise ValueError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")


def loss_weight(prediction: str, log_snr: torch.Tensor, min_snr_gamma: float) -> torch.Tensor:
    """Per-sample weight of the plain regression loss. With min-SNR-gamma (Hang et al. 2023) the
    effective x0-space weight is min(snr, gamma); divided by what the prediction target already implies
    (eps: snr, v: snr + 1, x0: 1)."""
    if min_snr_gamma <= 0:
        return torch.ones_like(log_snr)
    snr = log_snr.exp()
    clipped = snr.clamp(max=min_snr_gamma)
    if prediction == "eps":
        return clipped / snr
    if prediction == "v":
        return clipped / (snr + 1)
    if prediction == "x0":
        return clipped
    raise ValueError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")


def per_sample_loss(config: ObjectiveConfig, output: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor,
                    alpha: torch.Tensor, sigma: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape (B,): weighted mean over all other dimensions."""
    goal = target(config.prediction, x0, eps, alpha, sigma)
    output = output.float()
    if config.loss == "l2":
        err = F.mse_loss(output, goal, reduction="none")
    elif config.loss == "l1":
        err = F.l1_loss(output, goal, reduction="none")
    elif config.loss == "huber":
        err = F.smooth_l1_loss(output, goal, reduction="none")
    else:
        raise ValueError(f"unknown loss {config.loss!r}; valid: l2, l1, huber")
    return err.flatten(1).mean(1) * loss_weight(config.prediction, log_snr, config.min_snr_gamma)
