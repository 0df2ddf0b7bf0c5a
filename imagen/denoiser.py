"""The denoiser seam: a raw network + schedule + parameterisation -> (x0, eps) for (x_t, t, condition).

Samplers and guidance see only this (EDM's `Denoiser` / k-diffusion's wrappers): they never care whether
the network predicts eps, v or x0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
from torch import nn

from .objective import batch_scale, input_scale, to_x0_eps
from .schedules import Schedule


@dataclass(frozen=True)
class Condition:
    """Everything a stage's network is conditioned on besides x_t and t. Shapes:
    text_embeds (B, L, D) float, text_mask (B, L) bool (True = real token), drop_text (B,) bool (True = use
    the learned null condition), lowres (B, 3, H, W) in [-1, 1] (upsampled, noise-augmented), lowres_level
    (B,) in [0, 1] (the augmentation level); anchor (B, 3, H, W) in [-1, 1]: for a stage that diffuses the
    residual from its low-res input, that input upsampled and not augmented (the network predicts x0 - anchor)."""

    text_embeds: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    drop_text: torch.Tensor | None = None
    lowres: torch.Tensor | None = None
    lowres_level: torch.Tensor | None = None
    anchor: torch.Tensor | None = None

    def as_kwargs(self) -> dict:
        """The network's keyword arguments (everything but the anchor, which the denoiser applies)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "anchor"}

    def cat(self, other: Condition) -> Condition:
        """Concatenate along the batch (both must carry the same fields); text is padded to one length."""
        a, b = _pad_text(self._explicit_drop(), other._explicit_drop())
        out = {}
        for f in fields(self):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if (x is None) != (y is None):
                raise ValueError(f"cannot batch conditions: {f.name} is set in one and not the other")
            out[f.name] = None if x is None else torch.cat([x, y])
        return Condition(**out)

    def _explicit_drop(self) -> Condition:
        if self.drop_text is not None or self.text_embeds is None:
            return self
        batch = self.text_embeds.shape[0]
        return replace(self, drop_text=torch.zeros(batch, dtype=torch.bool, device=self.text_embeds.device))

    @property
    def batch(self) -> int:
        """The number of images conditioned (from the text, else the low-res images)."""
        return (self.text_embeds if self.text_embeds is not None else self.lowres).shape[0]

    def unconditional(self) -> Condition:
        """The same condition with the text replaced by the learned null condition."""
        device = (self.text_embeds if self.text_embeds is not None else self.lowres).device
        return replace(self, drop_text=torch.ones(self.batch, dtype=torch.bool, device=device))


def _pad_text(a: Condition, b: Condition) -> tuple[Condition, Condition]:
    if a.text_embeds is None or b.text_embeds is None:
        return a, b
    length = max(a.text_embeds.shape[1], b.text_embeds.shape[1])
    return _pad_to(a, length), _pad_to(b, length)


def _pad_to(c: Condition, length: int) -> Condition:
    extra = length - c.text_embeds.shape[1]
    if extra == 0:
        return c
    embeds = torch.nn.functional.pad(c.text_embeds, (0, 0, 0, extra))
    mask = torch.nn.functional.pad(c.text_mask, (0, extra), value=False)
    return replace(c, text_embeds=embeds, text_mask=mask)


class Prediction(NamedTuple):
    x0: torch.Tensor
    eps: torch.Tensor


class Denoiser:
    """Wraps a network `net(c_in x_t, t, **condition) -> output` that predicts `prediction` (eps, x0 or v, the
    latter for data of standard deviation `sigma_data`; see imagen.objective). A plain callable, not a module:
    the network's parameters belong to whoever owns the network."""

    def __init__(self, net: nn.Module, schedule: Schedule, prediction: str = "eps", sigma_data: float = 1.0):
        self.net, self.schedule, self.prediction, self.sigma_data = net, schedule, prediction, sigma_data

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, condition: Condition) -> Prediction:
        """x_t (B, C, H, W), t (B,) in [0, 1] -> Prediction(x0, eps), each (B, C, H, W), float32."""
        return self.bind(condition)(x_t, t)

    def bind(self, condition: Condition) -> Callable[[torch.Tensor, torch.Tensor], Prediction]:
        """`predict(x_t, t) -> Prediction` under a fixed `condition`, for the steps of a sampling run: a network
        that can encode its text once (`encode_text`, the U-Net) does so here, and every step reuses it.

        With an anchor a the network was trained on the residual r = x0 - a: the residual's noisy state is
        r_t = alpha r + sigma eps = x_t - alpha a, so the sampler keeps working on images, and eps is shared."""
        kwargs, anchor = condition.as_kwargs(), condition.anchor
        encode_text = getattr(self.net, "encode_text", None)
        if encode_text is not None:
            embeds, mask, drop = kwargs.pop("text_embeds"), kwargs.pop("text_mask"), kwargs.pop("drop_text")
            kwargs["text"] = encode_text(embeds, mask, drop, condition.batch, keys_values=True)

        def predict(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
            alpha, sigma = self.schedule.alpha_sigma(t)
            if anchor is not None:
                x_t = x_t - batch_scale(alpha, x_t).to(x_t.dtype) * anchor.to(x_t.dtype)
            c_in = batch_scale(input_scale(self.prediction, alpha, sigma, self.sigma_data), x_t).to(x_t.dtype)
            output = self.net(c_in * x_t, t, **kwargs).float()
            x0, eps = to_x0_eps(self.prediction, output, x_t.float(), alpha, sigma, self.sigma_data)
            return Prediction(x0 if anchor is None else x0 + anchor.float(), eps)

        return predict
