"""Tiny Efficient U-Net configs and inputs shared by the unets tests (CPU, a few thousand parameters).
Imported as a top-level module: pytest puts tests/unets on sys.path (the tests have no __init__.py)."""

from __future__ import annotations

import dataclasses

import torch

from configs import UNetConfig
from unets import EfficientUNet

TEXT_DIM = 12


def tiny_config(**overrides) -> UNetConfig:
    """Two levels, self- and cross-attention at the lower one; 8 base channels."""
    fields = dict(channels=8, channel_mults=(1, 2), num_res_blocks=(1, 2), self_attn=(False, True),
                  cross_attn=(False, True), head_dim=8, cond_dim=16)
    return dataclasses.replace(UNetConfig(**fields), **overrides)


def perturb(net: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised output layers no longer hide the rest."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


def make_net(config: UNetConfig | None = None, *, lowres_cond: bool = False, seed: int = 0) -> EfficientUNet:
    torch.manual_seed(seed)
    return perturb(EfficientUNet(config or tiny_config(), text_dim=TEXT_DIM, lowres_cond=lowres_cond), seed=seed)


def make_inputs(batch: int = 2, size: int = 16, *, length: int = 5, lowres_cond: bool = False, seed: int = 0) -> dict:
    """Keyword arguments of a forward: x, time, text (last token of row 0 is padding) and, for SR, lowres."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, -1] = False
    inputs = dict(x=torch.randn(batch, 3, size, size, generator=g), time=torch.rand(batch, generator=g),
                  text_embeds=torch.randn(batch, length, TEXT_DIM, generator=g), text_mask=mask)
    if lowres_cond:
        inputs["lowres"] = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        inputs["lowres_level"] = torch.rand(batch, generator=g)
    return inputs
