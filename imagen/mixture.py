"""Gaussian-mixture data, for which the optimal denoiser E[x0 | x_t] is known in closed form.

The ground truth that samplers are checked against (tests and `bench/samplers.py`): with the exact
denoiser, any error in the sampled distribution is the sampler's own discretisation error. The
"text" condition of `MixtureNet` is a component index, so classifier-free guidance works as with a
real model: conditional = one component, unconditional = the whole mixture.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .denoiser import Condition


class GaussianMixture:
    """x0 ~ sum_k w_k N(mean_k, std_k^2 I) in D dimensions. means (K, D), stds (K,), weights (K,)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
        self.means = means.double()
        self.stds = stds.double()
        self.weights = (weights / weights.sum()).double()

    @classmethod
    def default(cls, dim: int = 8) -> GaussianMixture:
        """Three components in `dim` dimensions, means uniform in [-0.6, 0.6] (fixed seed), unequal weights
        and widths: data inside [-1, 1] like images, with modes narrow enough to punish a coarse sampler."""
        means = torch.rand(3, dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 1.2 - 0.6
        return cls(means, torch.tensor([0.1, 0.15, 0.2]), torch.tensor([0.5, 0.3, 0.2]))

    def sample(self, n: int, generator: torch.Generator | None = None, component: int | None = None) -> torch.Tensor:
        if component is None:
            k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            k = torch.full((n,), component, dtype=torch.long)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k, None] * noise

    def posterior_mean(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                       component: torch.Tensor | None = None) -> torch.Tensor:
        """E[x0 | x_t] for x_t = alpha x0 + sigma eps. x_t (B, D); alpha, sigma (B,); component (B,) long
        with -1 meaning the whole mixture, else restrict to that component."""
        x = x_t.double()
        a, s = alpha.double()[:, None], sigma.double()[:, None]  # (B, 1)
        var = a**2 * self.stds[None] ** 2 + s**2  # (B, K): variance of x_t given component k
        diff = x[:, None, :] - a[:, :, None] * self.means[None]  # (B, K, D)
        dim = x.shape[1]
        log_r = (self.weights.log()[None] - 0.5 * dim * torch.log(2 * math.pi * var)
                 - 0.5 * (diff**2).sum(-1) / var)
        if component is not None:
            only = component[:, None] == torch.arange(len(self.weights))[None]
            log_r = torch.where((component[:, None] < 0) | only, log_r, torch.full_like(log_r, -math.inf))
        r = torch.softmax(log_r, dim=1)  # (B, K) responsibilities
        gain = (a * self.stds[None] ** 2 / var)[..., None]  # (B, K, 1)
        x0_k = self.means[None] + gain * diff
        return (r[..., None] * x0_k).sum(1).to(x_t.dtype)

    def error(self, samples: torch.Tensor, component: int | None = None) -> float:
        """Distance of `samples` (N, D) from this mixture (or one component): each sample is assigned to its
        nearest mean; error = sum_k |w_hat - w| + sum_k w (|mean_hat - mean| + |std_hat - std|)."""
        x = samples.double()
        weights = self.weights if component is None else torch.eye(len(self.weights), dtype=torch.float64)[component]
        nearest = torch.cdist(x, self.means).argmin(1)
        total = 0.0
        for k in range(len(self.weights)):
            members = x[nearest == k]
            w_hat = len(members) / len(x)
            total += abs(w_hat - float(weights[k]))
            if weights[k] > 0:
                if len(members) < 2:
                    total += float(weights[k]) * 10.0
                    continue
                mean_err = float((members.mean(0) - self.means[k]).norm())
                std_hat = float(members.std(0).mean())
                total += float(weights[k]) * (mean_err + abs(std_hat - float(self.stds[k])))
        return total


class MixtureNet(nn.Module):
    """A 'network' that predicts x0 exactly for a `GaussianMixture`, with the denoiser's interface:
    text_embeds[:, 0, 0] holds the component index of each row; drop_text (or no text) selects the
    whole mixture. Use with `Denoiser(net, schedule, prediction="x0")`."""

    def __init__(self, mixture: GaussianMixture, schedule):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule
        self.calls = 0

    def forward(self, x, time, text_embeds=None, text_mask=None, drop_text=None, lowres=None, lowres_level=None):
        self.calls += 1
        alpha, sigma = self.schedule.alpha_sigma(time.double())
        component = torch.full((x.shape[0],), -1, dtype=torch.long)
        if text_embeds is not None:
            component = text_embeds[:, 0, 0].round().long()
        if drop_text is not None:
            component = torch.where(drop_text, torch.full_like(component, -1), component)
        return self.mixture.posterior_mean(x, alpha, sigma, component)


def mixture_condition(component: int, batch: int) -> Condition:
    """The `Condition` selecting one component for a batch (for guided sampling of `MixtureNet`)."""
    embeds = torch.full((batch, 1, 1), float(component))
    return Condition(text_embeds=embeds, text_mask=torch.ones(batch, 1, dtype=torch.bool))

