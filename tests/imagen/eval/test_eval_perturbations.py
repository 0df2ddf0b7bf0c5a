"""Perturbed renderings must lose exactly the attributes that were perturbed; mild degradations must pass,
strong ones fail; random images score near chance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from imagen.eval import analyze, summarize
from imagen.shapes import POSITIONS, SHAPES, Scene, held_out_scenes, object_box, render, training_scene

RESOLUTION = 64
WRONG_MAX = 0.05  # a perturbed attribute is judged right at most this often
KEPT_MIN = 0.95  # an untouched attribute is still judged right at least this often


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return held_out_scenes(16, 1) + [training_scene(3, i, two_object_prob=0.0) for i in range(16)]


def _summary(pairs) -> dict:
    return summarize(analyze(image, scene) for image, scene in pairs)["all"]


def _replace(scene: Scene, **changes) -> Scene:
    return Scene((dataclasses.replace(scene.objects[0], **changes),), scene.background)


def _degrade(image: Image.Image, noise: float, blur: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur (radius in pixels), then Gaussian noise of std `noise` in [-1, 1] units."""
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    array = np.asarray(image, dtype=np.float32) + rng.normal(0, noise * 127.5, (image.height, image.width, 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _check(summary: dict, wrong: set[str]) -> None:
    for name in ("background", "object_color", "position", "shape", "size"):
        if name in wrong:
            assert summary[name] <= WRONG_MAX, (name, summary)
        else:
            assert summary[name] >= KEPT_MIN, (name, summary)
    assert summary["overall"] <= WRONG_MAX if wrong else summary["overall"] >= KEPT_MIN


def test_swapped_object_and_background_colours_are_wrong(scenes):
    swapped = [(render(Scene((dataclasses.replace(s.objects[0], color=s.background),), s.objects[0].color),
                       RESOLUTION), s) for s in scenes]
    _check(_summary(swapped), {"background", "object_color"})


def test_object_in_another_cell_is_wrong_position(scenes):
    moved = []
    for i, s in enumerate(scenes):
        others = [p for p in POSITIONS if p != s.objects[0].position]
        moved.append((render(_replace(s, position=others[i % len(others)]), RESOLUTION), s))
    _check(_summary(moved), {"position"})


def test_wrong_shape_is_wrong(scenes):
    pairs = []
    for i, s in enumerate(scenes):
        others = [shape for shape in SHAPES if shape != s.objects[0].shape]
        pairs.append((render(_replace(s, shape=others[i % 2]), RESOLUTION), s))
    _check(_summary(pairs), {"shape"})


def test_wrong_size_is_wrong(scenes):
    flipped = {"small": "large", "large": "small"}
    _check(_summary((render(_replace(s, size=flipped[s.objects[0].size]), RESOLUTION), s) for s in scenes), {"size"})


def test_erased_object_is_wrong_on_every_object_attribute(scenes):
    _check(_summary((render(Scene((), s.background), RESOLUTION), s) for s in scenes),
           {"object_color", "position", "shape", "size"})


def test_one_of_two_objects_erased():
    scenes = held_out_scenes(12, 2)
    result = summarize(analyze(render(Scene(s.objects[:1], s.background), RESOLUTION), s) for s in scenes)
    two = result["two_objects"]
    assert two["background"] == 1.0 and two["overall"] == 0.0
    for name in ("object_color", "position", "shape", "size"):
        assert two[name] == 0.0 and two["per_object"][name] == 0.5


def test_slightly_off_colours_specks_and_small_cuts_still_pass(scenes):
    rng = np.random.default_rng(0)
    pairs = []
    for s in scenes:
        image = render(s, RESOLUTION)
        shifted = np.asarray(image, dtype=np.float32) * rng.uniform(0.88, 1.08) + rng.uniform(-20, 20, 3)
        image = Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):  # specks of noise of random colours, 2 px across
            x, y = rng.uniform(0, RESOLUTION, 2)
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pairs.append((image, s))
    _check(_summary(pairs), set())
    partial = []  # a tenth of the object cut away
    for s in scenes:
        image = render(s, RESOLUTION)
        left, top, right, bottom = object_box(s.objects[0], RESOLUTION)
        ImageDraw.Draw(image).rectangle((left, top, left + (right - left) / 10, bottom), fill=s.background)
        partial.append((image, s))
    _check(_summary(partial), set())


@pytest.mark.parametrize(("noise", "blur"), [(0.1, 0.0), (0.2, 0.0), (0.0, 1.0), (0.1, 1.0)])
def test_mild_noise_and_blur_mostly_pass(scenes, noise, blur):
    rng = np.random.default_rng(1)
    summary = _summary((_degrade(render(s, RESOLUTION), noise, blur, rng), s) for s in scenes)
    assert summary["overall"] >= 0.9, summary


@pytest.mark.parametrize(("noise", "blur"), [(1.0, 0.0), (0.0, 4.0), (0.5, 2.0)])
def test_strong_noise_or_blur_fails(scenes, noise, blur):
    rng = np.random.default_rng(2)
    summary = _summary((_degrade(render(s, RESOLUTION), noise, blur, rng), s) for s in scenes)
    assert summary["overall"] <= 0.6, summary
    assert summary["background"] >= KEPT_MIN  # the background is large enough to survive


def test_random_images_score_near_chance(scenes):
    rng = np.random.default_rng(3)
    scenes = scenes[::2]
    pixels = [Image.fromarray(rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8)) for _ in scenes]
    smooth = [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
        (RESOLUTION, RESOLUTION), Image.Resampling.BICUBIC) for _ in scenes]
    for images in (pixels, smooth):
        summary = _summary(zip(images, scenes, strict=True))
        # chance: background 1/12, object colour 1/11, position 1/9, shape 1/3, size 1/2
        assert summary["overall"] == 0.0, summary
        assert summary["background"] <= 0.2 and summary["object_color"] <= 0.3, summary
        assert summary["position"] <= 0.3 and summary["shape"] <= 0.5 and summary["size"] <= 0.75, summary
