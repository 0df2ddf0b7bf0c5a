"""Convolutional building blocks of the Efficient U-Net (Imagen appendix B): residual blocks with
FiLM conditioning, and the resampling convolutions.

All blocks take feature maps `(B, C, H, W)` in any memory format (contiguous or channels_last) and a
conditioning vector `(B, cond_dim)` that has already been passed through SiLU once for the whole net.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .group_norm import GroupNorm

SKIP_SCALE = 1 / math.sqrt(2)  # Imagen appendix B.1: skip connections scaled by 1/sqrt(2)


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of GroupNorm groups <= max_groups that divides `channels`."""
    for groups in range(min(max_groups, channels), 0, -1):
        if channels % groups == 0:
            return groups
    raise AssertionError("unreachable: 1 divides every channel count")


def zero_init(module: nn.Module) -> nn.Module:
    """Zero the weights and bias of `module` (output layers start as the identity of the residual)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution (`nn.Conv2d`, same parameters and state dict). In a contiguous (NCHW) net on a CPU without
    autograd it runs as one batched matrix product, (C_out, C_in) @ (C_in, H * W) per image: oneDNN's 1x1 kernel
    reorders the map to its blocked layout and back on every call, which makes it 2-3.5x slower at a sampling
    batch. With autograd, or in a channels_last net, torch's convolution is as fast or faster. Takes
    `nn.Conv2d`'s arguments (peft builds a layer's LoRA factors with the layer's own class)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=1, *args, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, *args, **kwargs)
        self.pointwise = (self.kernel_size, self.stride, self.padding, self.groups) == ((1, 1), (1, 1), (0, 0), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a channels_last net's 1x1 kernels have stride C_in along their size-1 spatial dimensions, NCHW ones 1
        if (not self.pointwise or torch.is_grad_enabled() or x.device.type != "cpu" or self.weight.stride(-1) != 1
                or x.dim() != 4 or not x.is_contiguous()):
            return super().forward(x)
        b, _, h, w = x.shape
        weight, pixels = self.weight.flatten(1).expand(b, -1, -1), x.flatten(2)  # (B, C_out, C_in), (B, C_in, H*W)
        out = (torch.bmm(weight, pixels) if self.bias is None
               else torch.baddbmm(self.bias[None, :, None], weight, pixels))
        return out.view(b, -1, h, w)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3 -> GroupNorm -> FiLM(cond) -> SiLU -> dropout -> conv3x3 (zero-init),
    plus a 1x1 shortcut when the channel count changes. `(B, C_in, H, W) -> (B, C_out, H, W)`.

    With `scale_shift` the conditioning vector gives a per-channel scale and shift applied after the
    second norm (FiLM); without it, a per-channel bias added before that norm (DDPM). With `scale_skip`
    the residual sum is multiplied by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, *, dropout: float = 0.0,
                 scale_shift: bool = True, scale_skip: bool = True):
        super().__init__()
        self.scale_shift = scale_shift
        self.skip_scale = SKIP_SCALE if scale_skip else 1.0
        self.norm1 = GroupNorm(group_count(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.cond = nn.Linear(cond_dim, out_channels * (2 if scale_shift else 1))
        self.norm2 = GroupNorm(group_count(out_channels), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shortcut = PointwiseConv(in_channels, out_channels) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W), cond (B, cond_dim) already through SiLU -> (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        c = self.cond(cond).to(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = c.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), scale + 1)
        else:
            h = self.norm2(h + c)
        h = self.conv2(self.dropout(F.silu(h)))
        return (self.shortcut(x) + h) * self.skip_scale if self.skip_scale != 1.0 else self.shortcut(x) + h


class Downsample(nn.Module):
    """3x3 convolution with stride 2 (halves H and W) or stride 1 (keeps them); changes channels.
    `(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)`."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        assert stride in (1, 2)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Sub-pixel upsampling: a 1x1 convolution to `factor**2 * C_out` channels, then pixel shuffle
    (Shi et al. 2016), initialised ICNR-style so that it starts as nearest-neighbour upsampling of a 1x1
    convolution (no checkerboard). Nine times cheaper than nearest + conv3x3 at the output resolution.
    `(B, C_in, H, W) -> (B, C_out, H * factor, W * factor)`; factor 1 is a plain 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        assert factor in (1, 2)
        self.factor = factor
        if factor == 1:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            return
        self.conv = PointwiseConv(in_channels, out_channels * factor ** 2)
        weight = torch.empty(out_channels, in_channels, 1, 1)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))  # nn.Conv2d's default, for the shared kernel
        with torch.no_grad():
            self.conv.weight.copy_(weight.repeat_interleave(factor ** 2, dim=0))
            self.conv.bias.copy_(self.conv.bias.view(out_channels, -1)[:, :1].repeat_interleave(factor ** 2, 0)
                                 .flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return F.pixel_shuffle(x, self.factor) if self.factor != 1 else x

