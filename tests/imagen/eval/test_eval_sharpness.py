"""Sharpness: blur lowers it, bicubic upsampling is blurrier than a crisp rendering at the same size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from imagen.eval import compare_to_bicubic, sharpness
from imagen.eval.sharpness import bicubic_upsample
from imagen.shapes import held_out_scenes, render


@pytest.fixture(scope="module")
def scenes():
    return held_out_scenes(3, 1) + held_out_scenes(3, 2)


def test_flat_image_has_zero_sharpness():
    assert sharpness(Image.new("RGB", (32, 32), (40, 80, 220))) == 0.0


def test_blur_lowers_sharpness(scenes):
    for scene in scenes:
        image = render(scene, 256)
        values = [sharpness(image.filter(ImageFilter.GaussianBlur(r))) if r else sharpness(image) for r in (0, 1, 2)]
        assert values[0] > values[1] > values[2] > 0


def test_bicubic_upsampling_is_less_sharp_than_a_crisp_rendering(scenes):
    for scene in scenes:
        crisp, low = render(scene, 256), render(scene, 64)
        result = compare_to_bicubic(crisp, low)
        assert set(result) == {"sr", "bicubic", "ratio"}
        assert result["sr"] == pytest.approx(sharpness(crisp))
        assert result["bicubic"] == pytest.approx(sharpness(bicubic_upsample(low, (256, 256))))
        assert result["bicubic"] < result["sr"] and result["ratio"] > 2
        assert compare_to_bicubic(bicubic_upsample(low, (256, 256)), low)["ratio"] == pytest.approx(1.0)


def test_tensor_and_pil_agree():
    image = render(held_out_scenes(1, 1)[0], 64)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1.0
    assert sharpness(tensor) == pytest.approx(sharpness(image), rel=1e-4)


def test_too_small_image_raises():
    with pytest.raises(ValueError, match="too small"):
        sharpness(Image.new("RGB", (2, 2)))
