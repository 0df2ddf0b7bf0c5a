"""Where each pixel is, as the U-Net reads it: the coordinate channels of its input convolution (CoordConv) and
the Fourier features of its attention blocks' position embedding, both from one normalised pixel grid. Each is
built once per size, outside inference mode, so that training and sampling share the same tensors."""

from __future__ import annotations

import functools
import math

import torch


def _per_size(build):
    """`build`, cached per argument tuple (sizes, device); traced through directly while torch.compile traces a
    U-Net (Dynamo does not see through the cache: it would warn and trace the builder anyway)."""
    cached = functools.lru_cache(maxsize=32)(build)

    @functools.wraps(build)
    def get(*args):
        return build(*args) if torch.compiler.is_compiling() else cached(*args)

    return get


@_per_size
def pixel_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(H, W, 2) float32: each pixel's normalised (y, x) in [-1, 1]."""
    with torch.inference_mode(False), torch.no_grad():
        ys = torch.linspace(-1.0, 1.0, h, device=device)
        xs = torch.linspace(-1.0, 1.0, w, device=device)
        return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


@_per_size
def _coordinate_planes(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(1, 2, H, W) float32: the x plane, then the y plane."""
    with torch.inference_mode(False), torch.no_grad():
        return pixel_grid(h, w, device).flip(-1).permute(2, 0, 1)[None].contiguous()


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W): each pixel's normalised x and y in [-1, 1] (CoordConv, Liu et al. 2018), for `x` (B, C, H, W)."""
    b, _, h, w = x.shape
    return _coordinate_planes(h, w, x.device).to(x.dtype).expand(b, -1, -1, -1)


@_per_size
def fourier_positions(h: int, w: int, frequencies: int, device: torch.device) -> torch.Tensor:
    """(H * W, 4F) float32: sin and cos of every pixel's normalised (y, x) in [-1, 1] at F octaves from pi/2."""
    with torch.inference_mode(False), torch.no_grad():
        grid = pixel_grid(h, w, device).reshape(-1, 2)  # (H*W, 2)
        freqs = math.pi * 2.0 ** torch.arange(frequencies, dtype=torch.float32, device=device) / 2
        angles = (grid[:, :, None] * freqs).flatten(1)  # (H*W, 2F)
        return torch.cat([angles.sin(), angles.cos()], dim=1)
