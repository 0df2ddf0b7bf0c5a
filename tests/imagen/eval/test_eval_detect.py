"""Building blocks of the judge: components, palette naming, shape templates and fits, noise estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from imagen.eval.detect import detect, label_components, noise_level
from imagen.eval.image import PALETTE_NAMES, nearest_color, rgb_to_lab
from imagen.eval.shapefit import best_shape, template
from imagen.shapes import COLORS, Scene, ShapeObject, render


def test_label_components_8_connected():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one component
    mask[4:6, 3:6] = True
    labels, count = label_components(mask)
    assert count == 2
    assert labels[0, 0] == labels[1, 1] != labels[5, 5]
    assert (labels > 0).sum() == mask.sum()
    assert label_components(np.zeros((3, 3), dtype=bool))[1] == 0


def test_palette_names_itself_and_shaded_versions():
    for name in PALETTE_NAMES:
        rgb = np.array(COLORS[name], dtype=np.float32)
        assert nearest_color(rgb_to_lab(rgb)) == name
        assert nearest_color(rgb_to_lab(np.clip(rgb * 0.9 + 8, 0, 255))) == name  # a little off


@pytest.mark.parametrize(("shape", "area"), [("circle", math.pi / 4), ("square", 1.0), ("triangle", 0.5)])
def test_template_area(shape, area):
    coverage = template(shape, (16.0, 16.0), 20.0, (32, 32))
    assert coverage.min() >= 0 and coverage.max() <= 1
    assert coverage.sum() == pytest.approx(area * 400, rel=0.02)


@pytest.mark.parametrize("points", ["up", "down", "left", "right"])
def test_best_shape_recovers_triangles_any_way_round(points):
    fit, errors = best_shape(template("triangle", (15.3, 14.6), 16.0, (32, 32), points))
    assert fit.shape == "triangle" and fit.error < 0.02 and errors["circle"] > 0.05
    assert fit.diameter == pytest.approx(16.0, rel=0.1)


def test_noise_level_of_clean_and_noisy_images():
    clean = np.asarray(render(Scene((ShapeObject("large", "red", "circle", "center"),), "blue"), 64), np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 10, clean.shape)
    assert noise_level(clean) < 0.5 and noise_level(noisy) > 5


def test_detect_measures_a_rendered_object():
    scene = Scene((ShapeObject("large", "green", "square", "bottom right"),), "white")
    background, found = detect(np.asarray(render(scene, 128), np.float32))
    assert background.color == "white" and len(found) == 1
    obj = found[0]
    assert (obj.color, obj.shape, obj.cell) == ("green", "square", (2, 2))
    assert obj.diameter == pytest.approx(1 / 3, rel=0.05) and obj.area == pytest.approx(1 / 9, rel=0.05)
    assert obj.center == pytest.approx((5 / 6, 5 / 6), abs=0.01)
