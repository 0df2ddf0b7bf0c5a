"""SR fidelity against the true image: PSNR by region, colour error and grain on flat regions, low-res consistency."""

from __future__ import annotations

import numpy as np
import pytest

from imagen.eval.fidelity import compare_to_truth, flat_blocks, lowres_consistency, psnr
from imagen.eval.image import resize
from imagen.shapes import held_out_scenes, render


def _scene(side: int) -> np.ndarray:
    return np.asarray(render(held_out_scenes(1)[0], side), dtype=np.float32)


def test_psnr_exact_values():
    a = np.zeros((4, 4, 3))
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-9)


def test_the_true_image_scores_perfectly_against_itself():
    truth, low = _scene(64), _scene(16)
    result = compare_to_truth(truth, truth, low)
    assert result["psnr"] == result["psnr_edges"] == result["psnr_flat"] == float("inf")
    assert result["color_error"] == 0 and result["grain"] == 0
    assert result["lowres_psnr"] > 38  # the area-averaged render against the 16 px render


def test_a_constant_shift_is_colour_error_not_grain_and_noise_is_grain_not_colour_error():
    truth, low = _scene(64), _scene(16)
    shifted = compare_to_truth(np.clip(truth + [3, 0, 0], 0, 255), truth, low)
    assert shifted["color_error"] == pytest.approx(3.0, abs=0.3) and shifted["grain"] < 0.3
    noise = np.random.default_rng(0).normal(0, 5, truth.shape)
    grainy = compare_to_truth(np.clip(truth + noise, 0, 255), truth, low)
    assert grainy["grain"] == pytest.approx(5.0, rel=0.15) and grainy["color_error"] < 2.5


def test_a_blurred_edge_costs_the_edge_band_only():
    truth, low = _scene(64), _scene(16)
    blurred = resize(resize(truth, 16), 64)
    result = compare_to_truth(blurred, truth, low)
    assert result["psnr_edges"] < 30 < result["psnr_flat"]


def test_flat_blocks_mark_uniform_footprints_only():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    image[:, 6:] = 255  # an edge in the last block column
    flat = flat_blocks(image, 2)
    assert flat[:, :2].all() and not flat[:, 2:].any()  # the neighbour of the edge block is not flat either


def test_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="differ in size"):
        compare_to_truth(_scene(64), _scene(32), _scene(16))


def test_lowres_consistency_compares_the_shrunk_output_with_what_the_stage_was_given():
    truth, given = _scene(64), _scene(16)
    assert lowres_consistency(truth, given) > 38
    assert lowres_consistency(np.clip(truth + 10, 0, 255), given) < 29
