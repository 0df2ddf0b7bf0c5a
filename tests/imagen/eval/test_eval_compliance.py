"""Caption compliance on rendered ground truth (must be ~100%) and API behaviour of imagen.eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagen.eval import ATTRIBUTES, analyze, evaluate, judge, summarize
from imagen.shapes import Scene, ShapeObject, held_out_scenes, render, training_scene

GROUND_TRUTH_MIN = 0.98  # every attribute, on rendered ground truth


def _accuracy(pairs) -> dict:
    return summarize(analyze(image, scene) for image, scene in pairs)


def _assert_all_at_least(summary: dict, threshold: float) -> None:
    for group in ("one_object", "two_objects", "all"):
        if summary[group]["count"]:
            for name in (*ATTRIBUTES, "overall"):
                assert summary[group][name] >= threshold, (group, name, summary[group])


def test_ground_truth_64_scores_100_percent():
    scenes = (held_out_scenes(40, 1) + held_out_scenes(30, 2)
              + [training_scene(7, i) for i in range(50)])  # training stream: one and two objects mixed
    summary = _accuracy((render(s, 64), s) for s in scenes)
    assert summary["one_object"]["count"] > 50 and summary["two_objects"]["count"] > 35
    _assert_all_at_least(summary, GROUND_TRUTH_MIN)


def test_ground_truth_256_scores_100_percent():
    scenes = held_out_scenes(16, 1, seed=1) + held_out_scenes(12, 2, seed=1)
    _assert_all_at_least(_accuracy((render(s, 256), s) for s in scenes), GROUND_TRUTH_MIN)


def test_touching_objects_are_told_apart():
    """Two large objects in neighbouring cells touch; same colour or not, both are found and judged."""
    scenes = [Scene((ShapeObject("large", c1, shape, p1), ShapeObject("large", c2, shape, p2)), background)
              for background in ("blue", "white")
              for c1, c2 in (("red", "red"), ("yellow", "orange"))
              for shape in ("circle", "square", "triangle")
              for p1, p2 in (("top left", "top"), ("center", "bottom"), ("center", "bottom right"))]
    _assert_all_at_least(_accuracy((render(s, 64), s) for s in scenes), 1.0)


def test_judge_keys_and_values():
    caption = "a small red circle at the top left on a blue background"
    result = judge(render(Scene((ShapeObject("small", "red", "circle", "top left"),), "blue"), 64), caption)
    assert set(result) == {*ATTRIBUTES, "overall", "object_found"}
    assert all(result.values())


def test_image_types_agree():
    """PIL, (3, H, W) tensor in [-1, 1], (1, 3, H, W) tensor and (H, W, 3) uint8 array give one judgement."""
    scene = held_out_scenes(1, 2)[0]
    image = render(scene, 64)
    array = np.array(image)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1.0
    expected = judge(image, scene.caption)
    assert expected["overall"]
    for other in (array, tensor, tensor[None]):
        assert judge(other, scene.caption) == expected


def test_bad_inputs_raise():
    image = render(held_out_scenes(1, 1)[0], 64)
    with pytest.raises(ValueError, match="not a shapes caption"):
        judge(image, "a photo of a cat")
    with pytest.raises(ValueError, match="shape"):
        judge(torch.zeros(4, 8, 8), held_out_scenes(1, 1)[0].caption)
    with pytest.raises(TypeError):
        judge([[0, 0, 0]], held_out_scenes(1, 1)[0].caption)
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        evaluate([image, image], ["x"])


def test_evaluate_aggregates_and_skips():
    one, two = held_out_scenes(2, 1), held_out_scenes(1, 2)
    swapped = Scene((ShapeObject(one[1].objects[0].size, one[1].background, one[1].objects[0].shape,
                                 one[1].objects[0].position),), one[1].objects[0].color)
    images = [render(one[0], 64), render(swapped, 64), render(two[0], 64), render(one[0], 64)]
    captions = [one[0].caption, one[1].caption, two[0].caption, "not a shapes caption"]
    result = evaluate(images, captions)
    assert result["count"] == 3 and result["skipped"] == 1
    assert result["one_object"]["count"] == 2 and result["two_objects"]["count"] == 1
    assert result["one_object"]["background"] == 0.5 and result["one_object"]["object_color"] == 0.5
    assert result["one_object"]["position"] == 1.0 and result["one_object"]["overall"] == 0.5
    assert result["two_objects"]["overall"] == 1.0 and result["two_objects"]["per_object"]["shape"] == 1.0
    assert result["all"]["background"] == pytest.approx(2 / 3)


def test_outline_error_is_near_zero_for_true_renders_and_grows_with_the_wrong_outline():
    scenes = held_out_scenes(12, 1) + held_out_scenes(4, 2)
    true = evaluate([render(s, 64) for s in scenes], [s.caption for s in scenes])
    assert true["one_object"]["outline_error"] < 0.002 and true["two_objects"]["outline_error"] < 0.002
    cases = (("large", "red", "top", "blue"), ("small", "white", "center", "green"))
    circles = [Scene((ShapeObject(size, color, "circle", where),), bg) for size, color, where, bg in cases]
    squares = [Scene((ShapeObject(size, color, "square", where),), bg) for size, color, where, bg in cases]
    drawn_as_squares = evaluate([render(s, 64) for s in squares], [s.caption for s in circles])["one_object"]
    assert drawn_as_squares["outline_error"] > 0.05 and drawn_as_squares["shape"] == 0.0
    assert evaluate([], [])["one_object"]["outline_error"] is None


def test_evaluate_takes_a_batch_tensor():
    scenes = held_out_scenes(3, 1)
    batch = torch.stack([torch.from_numpy(np.array(render(s, 64))).permute(2, 0, 1) for s in scenes])
    result = evaluate(batch.float() / 127.5 - 1.0, [s.caption for s in scenes])
    assert result["one_object"]["overall"] == 1.0 and result["two_objects"]["count"] == 0
    assert result["two_objects"]["overall"] is None


def test_missing_object_is_wrong_on_every_object_attribute():
    scene = held_out_scenes(1, 1)[0]
    judgement = analyze(render(Scene((), scene.background), 64), scene)
    assert judgement.objects[0].found is None
    assert judgement.as_dict() == {"background": True, "object_color": False, "position": False, "shape": False,
                                   "size": False, "overall": False, "object_found": False}
