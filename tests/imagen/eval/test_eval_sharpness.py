"""Sharpness: blur lowers it, bicubic upsampling is blurrier than a crisp rendering at the same size; grain on
flat regions and colour drift of an SR output against its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from imagen.eval import compare_to_bicubic, sharpness
from imagen.eval.sharpness import bicubic_upsample, color_drift, flat_grain
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
        assert set(result) == {"sr", "bicubic", "ratio", "flat_grain", "color_drift"}
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


def test_grain_is_zero_on_a_clean_output_and_measures_added_noise(scenes):
    rng = np.random.default_rng(0)
    for scene in scenes:
        crisp, low = render(scene, 256), render(scene, 64)
        assert flat_grain(crisp, low) < 1.0  # antialiased edges only
        noisy = np.asarray(crisp, dtype=np.float32) + rng.normal(0, 8, (256, 256, 1)).astype(np.float32)
        grain = flat_grain(np.clip(noisy, 0, 255), low)
        assert 25 < grain < 45  # the Laplacian of white noise of std 8 has std 8 * sqrt(20) ~ 36


def test_grain_is_none_without_flat_regions():
    checkerboard = Image.fromarray((np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    assert flat_grain(checkerboard.resize((64, 64), Image.Resampling.NEAREST), checkerboard) is None


def test_color_drift_is_small_for_a_faithful_output_and_measures_a_shift(scenes):
    for scene in scenes:
        crisp, low = render(scene, 256), render(scene, 64)
        assert color_drift(crisp, low) < 2.0
        shifted = np.asarray(crisp, dtype=np.float32).copy()
        shifted[..., 2] = np.clip(shifted[..., 2] - 30, 0, 255)
        assert 15 < color_drift(shifted, low) <= 30.5


def test_fidelity_needs_an_integer_upscale_of_a_square_input():
    scene = held_out_scenes(1, 1)[0]
    result = compare_to_bicubic(render(scene, 200), render(scene, 64))  # 200 / 64 is no integer factor
    assert result["ratio"] > 1 and result["flat_grain"] is None and result["color_drift"] is None
    for measure in (flat_grain, color_drift):
        with pytest.raises(ValueError, match="multiple of its square input"):
            measure(render(scene, 200), render(scene, 64))
