"""Resizing image tensors between the stages of the cascade.

One pair of functions, used by both sides so that training and sampling see the same low-res images:
the trainer makes an SR stage's low-res input with `downsample` (Imagen section 2.5 conditions each SR
stage on the previous stage's output at its resolution), and the pipeline brings a stage's output up to
the next resolution with `upsample`.

Both are `torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False)`: with
`antialias=True` the bicubic kernel is widened by the scale factor when shrinking, which is the same
filter as PIL's `Image.resize(..., BICUBIC)` (agreement within a few 8-bit levels), so no aliasing; when
growing, antialiasing changes nothing. Outputs are clamped to [-1, 1] because bicubic overshoots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return height, width


def _bicubic(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if image.ndim not in (3, 4):
        raise ValueError(f"expected an image (C, H, W) or a batch (B, C, H, W), got shape {tuple(image.shape)}")
    batch = image if image.ndim == 4 else image.unsqueeze(0)
    dtype = batch.dtype if batch.dtype in (torch.float32, torch.float64) else torch.float32
    out = F.interpolate(batch.to(dtype), size=size, mode="bicubic", antialias=True, align_corners=False)
    out = out.clamp(-1.0, 1.0).to(image.dtype)
    return out if image.ndim == 4 else out.squeeze(0)


def downsample(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic shrink of `image` ((C, H, W) or (B, C, H, W) in [-1, 1]) to `size` (side, or
    (height, width)), clamped to [-1, 1]; same rank, dtype and device. Raises ValueError when growing."""
    height, width = _size(size)
    if height > image.shape[-2] or width > image.shape[-1]:
        raise ValueError(f"downsample to {height}x{width} would grow a {image.shape[-2]}x{image.shape[-1]} "
                         "image: use upsample")
    return _bicubic(image, (height, width))


def upsample(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic enlargement of `image` ((C, H, W) or (B, C, H, W) in [-1, 1]) to `size`, clamped to
    [-1, 1]; same rank, dtype and device. Raises ValueError when shrinking."""
    height, width = _size(size)
    if height < image.shape[-2] or width < image.shape[-1]:
        raise ValueError(f"upsample to {height}x{width} would shrink a {image.shape[-2]}x{image.shape[-1]} "
                         "image: use downsample")
    return _bicubic(image, (height, width))
