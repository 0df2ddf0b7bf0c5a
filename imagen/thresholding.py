"""Thresholding of the predicted x0 (Imagen section 2.3): pure functions `x0 -> x0` handed to samplers.

Large guidance weights push x0 predictions outside the data range [-1, 1]; static thresholding clips,
dynamic thresholding rescales each sample by s = max(percentile_p(|x0|), 1) and clips to [-s, s] first,
which keeps saturated pixels from dominating and gives photorealistic samples at large guidance.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from configs import THRESHOLDING_MODES

X0Fn = Callable[[torch.Tensor], torch.Tensor]


def static_threshold(x0: torch.Tensor) -> torch.Tensor:
    """Clip to [-1, 1]."""
    return x0.clamp(-1.0, 1.0)


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    """Per sample: s = max(quantile(|x0|, percentile), 1); x0 <- clip(x0, -s, s) / s.
    The identity for samples already inside [-1, 1]. x0: (B, ...) -> same shape, in [-1, 1]."""
    flat = x0.detach().flatten(1).abs().float()
    s = torch.quantile(flat, percentile, dim=1).clamp_min(1.0).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, s), -s) / s


def make_x0_fn(mode: str, percentile: float = 0.995) -> X0Fn | None:
    """The `x0_fn` for a thresholding mode: `none` (None), `static` or `dynamic`."""
    if mode == "none":
        return None
    if mode == "static":
        return static_threshold
    if mode == "dynamic":
        return partial(dynamic_threshold, percentile=percentile)
    raise ValueError(f"unknown thresholding {mode!r}; valid: {', '.join(THRESHOLDING_MODES)}")
