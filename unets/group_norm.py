"""GroupNorm whose backward is fast for channels_last feature maps on a CPU.

torch's CPU GroupNorm backward for channels_last inputs with few channels per group runs at under 1 GB/s
(forward + backward 7-9 ms for a (4, 16, 128, 128) map in torch 2.13, 0.9 ms for the same map contiguous); the
super-resolution stages train channels_last, where it took a fifth of the 256->1024 step. The forward stays
torch's (fast in either layout); the backward below is the textbook one written as two per-channel reductions
and two fused multiply-adds, each of which runs at memory speed in either layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ChannelsLastGroupNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float):
        b, c, h, w = x.shape
        y, mean, rstd = torch.ops.aten.native_group_norm(x, weight, bias, b, c, h * w, groups, eps)
        per_group = c // groups
        ctx.save_for_backward(x, weight, mean.repeat_interleave(per_group, dim=1),
                              rstd.repeat_interleave(per_group, dim=1))  # (B, C): each channel its group's
        ctx.groups = groups
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        # With xhat = (x - mean) * rstd and y = weight * xhat + bias, per group of n = H * W * C / G values:
        # dx = rstd * (g - mean_n(g) - xhat * mean_n(g * xhat)), g = weight * dy, which is A * dy + B * x + C
        # per (sample, channel) once the two group means are known from sum(dy) and sum(dy * x) per channel.
        x, weight, mean, rstd = ctx.saved_tensors
        b, c, h, w = x.shape
        per_group = c // ctx.groups
        sum_dy = dy.sum(dim=(2, 3))                                      # (B, C)
        sum_dy_xhat = ((dy * x).sum(dim=(2, 3)) - mean * sum_dy) * rstd  # (B, C): sum of dy * xhat

        def group_mean(per_channel: torch.Tensor) -> torch.Tensor:
            """(B, C) -> (B, C): each channel its group's mean over the group's n values."""
            sums = per_channel.view(b, ctx.groups, per_group).sum(-1)
            return sums.repeat_interleave(per_group, dim=1) / (h * w * per_group)

        mean_g = group_mean(sum_dy * weight)
        mean_g_xhat = group_mean(sum_dy_xhat * weight)
        a = rstd * weight
        bx = -rstd * rstd * mean_g_xhat
        const = -rstd * mean_g - bx * mean
        dx = torch.addcmul(const[:, :, None, None], dy, a[:, :, None, None])
        dx.addcmul_(x, bx[:, :, None, None])
        return dx, sum_dy_xhat.sum(0), sum_dy.sum(0), None, None


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` (same parameters and state dict) that trains a float32 channels_last map on a CPU with the
    backward above (affine only); every other case is torch's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.affine and x.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu"
                and x.dtype == torch.float32 and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _ChannelsLastGroupNorm.apply(x, self.weight, self.bias, self.num_groups, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
