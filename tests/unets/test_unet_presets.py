"""The presets build: the paper's U-Nets (built on the meta device, T5-XXL text) have the paper's parameter
counts within 15%, pinned exactly so that an architecture change shows up; the CPU demo's stages run."""

from __future__ import annotations

import pytest
import torch

from configs import load_config
from unets import EfficientUNet

T5_XXL_DIM = 4096

# (preset, stage, paper's parameter count, our exact count)
PAPER_PRESETS = [
    ("imagen-base-64", "base", 2.0e9, 1_936_246_787),
    ("imagen-sr-256", "sr1", 600e6, 587_365_891),
    ("imagen-sr-1024", "sr2", 400e6, 409_028_099),
]


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("preset, stage, paper, pinned", PAPER_PRESETS)
def test_paper_preset_parameter_counts(preset, stage, paper, pinned):
    config = getattr(load_config(preset), stage)
    with torch.device("meta"):
        net = EfficientUNet(config.unet, text_dim=T5_XXL_DIM, lowres_cond=config.is_super_resolution)
    count = _count(net)
    assert abs(count / paper - 1) <= 0.15, f"{preset}: {count / 1e6:.1f}M params, paper {paper / 1e6:.0f}M"
    assert count == pinned, f"{preset}: {count} parameters (pinned {pinned}); update the pin if intended"


def test_paper_cascade_inherits_the_three_stages():
    cascade = load_config("imagen-cascade")
    for preset, stage, _, _ in PAPER_PRESETS:
        assert getattr(cascade, stage).unet == getattr(load_config(preset), stage).unet


@pytest.mark.parametrize("stage", ["base", "sr1", "sr2"])
def test_shapes_tiny_stages_run_at_their_training_size(stage):
    config = getattr(load_config("shapes-tiny"), stage)
    torch.manual_seed(0)
    net = EfficientUNet(config.unet, text_dim=32, lowres_cond=config.is_super_resolution).eval()
    size = config.train.crop_size or config.resolution
    x = torch.randn(1, 3, size, size)
    sr = dict(lowres=x.clamp(-1, 1), lowres_level=torch.zeros(1)) if config.is_super_resolution else {}
    with torch.no_grad():
        out = net(x, torch.rand(1), text_embeds=torch.randn(1, 3, 32), text_mask=torch.ones(1, 3, dtype=torch.bool),
                  **sr)
    assert out.shape == x.shape
