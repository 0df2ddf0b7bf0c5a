"""imagen/resize.py: antialiased bicubic downsample/upsample shared by training and sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imagen.resize import downsample, upsample


def test_shapes_dtype_and_range():
    image = torch.rand(3, 32, 32) * 2 - 1
    small = downsample(image, 8)
    assert small.shape == (3, 8, 8) and small.dtype == torch.float32
    batch = downsample(image.unsqueeze(0).repeat(2, 1, 1, 1).double(), (8, 16))
    assert batch.shape == (2, 3, 8, 16) and batch.dtype == torch.float64
    big = upsample(small, 32)
    assert big.shape == (3, 32, 32)
    assert big.min() >= -1 and big.max() <= 1  # bicubic overshoot clamped
    assert downsample(image.half(), 16).dtype == torch.float16


def test_constant_image_is_preserved():
    image = torch.full((1, 3, 16, 16), 0.25)
    assert torch.allclose(downsample(image, 4), image[..., :4, :4], atol=1e-6)
    assert torch.allclose(upsample(image, 64), torch.full((1, 3, 64, 64), 0.25), atol=1e-6)


def test_downsample_is_antialiased_like_pil_bicubic():
    stripes = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # 1-pixel stripes: aliasing would give black or white, not gray
    tensor = torch.from_numpy(stripes).permute(2, 0, 1).float() / 127.5 - 1
    ours = ((downsample(tensor, 16) + 1) * 127.5)[:, :, 1:-1]  # away from the left/right borders
    assert ours.std() < 0.5 and abs(ours.mean() - 127.5) < 0.5
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(noise).resize((16, 16), Image.Resampling.BICUBIC)).astype(float)
    ours = ((downsample(torch.from_numpy(noise).permute(2, 0, 1).float() / 127.5 - 1, 16) + 1) * 127.5)
    assert np.abs(ours.permute(1, 2, 0).numpy() - pil).max() < 3.0


def test_wrong_direction_and_bad_sizes():
    image = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="upsample"):
        downsample(image, 16)
    with pytest.raises(ValueError, match="downsample"):
        upsample(image, 4)
    with pytest.raises(ValueError, match="positive"):
        downsample(image, 0)
    with pytest.raises(ValueError, match="shape"):
        downsample(torch.zeros(8, 8), 4)
