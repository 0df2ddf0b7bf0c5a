"""A shape the training stream never draws (the star): rendered, parsed, judged only when the judge is taught it."""

from __future__ import annotations

import itertools
import json

import pytest

from imagen.eval.cli import main
from imagen.eval.compliance import judge
from imagen.shapes import (
    ALL_SHAPES,
    COLORS,
    NEW_SHAPES,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    parse_caption,
    render,
    training_scene,
)


def _scenes(shape: str) -> list[Scene]:
    colors = list(COLORS)
    return [Scene((ShapeObject(size, colors[i % 12], shape, position),), colors[(i + 5) % 12])
            for i, (size, position) in enumerate(itertools.product(SIZES, POSITIONS))]


def test_the_training_stream_never_draws_a_new_shape():
    assert set(NEW_SHAPES).isdisjoint(SHAPES) and ALL_SHAPES == SHAPES + NEW_SHAPES
    drawn = {o.shape for i in range(2000) for o in training_scene(0, i).objects}
    assert drawn == set(SHAPES)


def test_star_captions_parse():
    scene = parse_caption("a small green star at the bottom right on a purple background")
    assert scene is not None and scene.objects[0].shape == "star"
    assert scene.caption == "a small green star at the bottom right on a purple background"


@pytest.mark.parametrize("resolution", [64, 256])
def test_taught_judge_gets_every_render_right(resolution):
    for shape in ALL_SHAPES:
        for scene in _scenes(shape):
            assert judge(render(scene, resolution), scene, ALL_SHAPES)["overall"], (scene.caption, resolution)


def test_untaught_judge_never_says_star():
    for scene in _scenes("star"):
        verdict = judge(render(scene, 64), scene)
        assert not verdict["shape"] and verdict["background"] and verdict["object_color"]


def test_cli_shapes_flag(tmp_path, capsys):
    for i, scene in enumerate(_scenes("star")[:4]):
        render(scene, 64).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(scene.caption)
    assert main([str(tmp_path), "--shapes", ",".join(ALL_SHAPES), "--json", str(tmp_path / "taught.json")]) == 0
    assert main([str(tmp_path), "--json", str(tmp_path / "default.json")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "taught.json").read_text())["all"]["shape"] == 1.0
    assert json.loads((tmp_path / "default.json").read_text())["all"]["shape"] == 0.0
    assert main([str(tmp_path), "--shapes", "circle,hexagon"]) == 2
    err = capsys.readouterr().err
    assert "unknown shape hexagon" in err and len(err.strip().splitlines()) == 1
