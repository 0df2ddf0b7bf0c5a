"""Conversions between PIL images and tensors in the library's convention: (3, H, W) float in [-1, 1]."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def is_deep_grey(image: Image.Image) -> bool:
    """Whether `image` is grey deeper than 8 bits (PIL modes `I`, `I;16*`, `F`), which `convert("RGB")` clips."""
    return image.mode.startswith("I") or image.mode == "F"


def deep_grey_to_rgb(image: Image.Image) -> Image.Image:
    """A grey image deeper than 8 bits as 8-bit RGB, its levels kept (`convert("RGB")` clips them): 16-bit (`I;16*`,
    and `I`, as 16-bit PNGs open) scaled from 0..65535, float (`F`) read as 0..1."""
    array = np.asarray(image).astype(np.float64)
    scale = 1.0 if image.mode == "F" else 65535.0
    grey = np.clip(np.rint(array / scale * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB (or convertible) PIL image as a float tensor (3, H, W) in [-1, 1]."""
    if is_deep_grey(image):
        image = deep_grey_to_rgb(image)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) in [-1, 1] -> list of RGB PIL images."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]
