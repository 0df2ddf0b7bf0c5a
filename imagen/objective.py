"""The diffusion training objective: forward process, targets, conversions, per-sample loss.

Notation (VDM / Imagen): x_t = alpha_t x0 + sigma_t eps, with alpha^2 + sigma^2 = 1.
The network predicts one of eps, x0 or v = alpha eps - sigma x0 (Salimans & Ho 2022, section 4);
all three carry the same information given x_t, and `to_x0_eps` converts any of them.

v for data of standard deviation sigma_data != 1 (an SR stage's residual, a few hundredths) is EDM's
preconditioning (Karras et al. 2022, table 1) in VP form: with k^2 = alpha^2 sigma_data^2 + sigma^2 (the
variance of x_t), the network reads c_in x_t = x_t / k and x0 = c_skip x_t - c_out v, c_skip = alpha sigma_data^2
/ k^2 (the best linear guess of x0) and c_out = sigma_data sigma / k (its error), so the target v is unit-variance
at every noise level and the error of v reaches x0 scaled by sigma_data. sigma_data = 1 gives plain v.
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


def _spread(alpha: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """k = sqrt(alpha^2 sigma_data^2 + sigma^2), the standard deviation of x_t (1 when sigma_data = 1)."""
    return (alpha * alpha * sigma_data**2 + sigma * sigma).sqrt()


def input_scale(prediction: str, alpha: torch.Tensor, sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """c_in (B,): what x_t is multiplied by before the network reads it (1 but for v with sigma_data != 1)."""
    if prediction != "v" or sigma_data == 1.0:
        return torch.ones_like(alpha)
    return 1.0 / _spread(alpha, sigma, sigma_data)


def target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor,
           sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """The regression target for a network that predicts `prediction`."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        if sigma_data == 1.0:
            return batch_scale(alpha, x0) * eps - batch_scale(sigma, x0) * x0
        k = batch_scale(_spread(alpha, sigma, sigma_data), x0)
        a, s = batch_scale(alpha, x0), batch_scale(sigma, x0)
        # v = (c_skip x_t - x0) / c_out with x_t = a x0 + s eps
        return (a * sigma_data * eps - s / sigma_data * x0) / k
    raise ValueError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")


def to_x0_eps(prediction: str, output: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor,
              sigma: torch.Tensor, sigma_data: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output of kind `prediction` at x_t into (x0, eps)."""
    a, s = batch_scale(alpha, x_t), batch_scale(sigma, x_t)
    if prediction == "eps":
        return (x_t - s * output) / a, output
    if prediction == "x0":
        return output, (x_t - a * output) / s
    if prediction == "v":
        if sigma_data == 1.0:  # alpha^2 + sigma^2 = 1: x0 = alpha x_t - sigma v, eps = sigma x_t + alpha v
            return a * x_t - s * output, s * x_t + a * output
        k = batch_scale(_spread(alpha, sigma, sigma_data), x_t)
        x0 = a * sigma_data**2 / (k * k) * x_t - sigma_data * s / k * output
        return x0, s / (k * k) * x_t + a * sigma_data / k * output  # eps = (x_t - a x0) / s, without dividing by s
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
                    alpha: torch.Tensor, sigma: torch.Tensor, log_snr: torch.Tensor,
                    pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of each sample, shape (B,): the mean over all other dimensions, or with `pixel_weight` (B, 1, H, W)
    the mean weighted by it (a loss mask: what the subject covers counts more than the rest)."""
    goal = target(config.prediction, x0, eps, alpha, sigma, config.sigma_data)
    output = output.float()
    if config.loss == "l2":
        err = F.mse_loss(output, goal, reduction="none")
    elif config.loss == "l1":
        err = F.l1_loss(output, goal, reduction="none")
    elif config.loss == "huber":
        err = F.smooth_l1_loss(output, goal, reduction="none")
    else:
        raise ValueError(f"unknown loss {config.loss!r}; valid: l2, l1, huber")
    if pixel_weight is None:
        per_sample = err.flatten(1).mean(1)
    else:
        per_sample = (err * pixel_weight).flatten(1).sum(1) / (pixel_weight.flatten(1).sum(1) * err.shape[1])
    return per_sample * loss_weight(config.prediction, log_snr, config.min_snr_gamma)
