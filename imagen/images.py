"""Conversions between PIL images and tensors in the library's convention: (3, H, W) float in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB (or convertible) PIL image as a float tensor (3, H, W) in [-1, 1]. Grey images deeper than 8 bits
    (16-bit PNGs open as `I;16` or `I`, float ones as `F`) are scaled by their depth: `convert("RGB")` clips them."""
    if image.mode.startswith("I") or image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        top = grey.max(initial=0)
        full = 65535.0 if image.mode.startswith("I;16") or top > 255 else 1.0 if image.mode == "F" and top <= 1 \
            else 255.0  # `I` and `F` say nothing of their range: 16-bit, [0, 1] floats, else 8-bit values
        unit = torch.from_numpy(np.clip(grey / full, 0.0, 1.0)).float()
        return unit.mul(2.0).sub(1.0).expand(3, *unit.shape).contiguous()
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) in [-1, 1] -> list of RGB PIL images."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]
