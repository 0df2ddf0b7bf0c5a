"""bench/new_shape.py's tuning data: 40 renders of the star with captions, named by `--phrase` when given, small
or large as `--small-share` asks."""

from __future__ import annotations

import argparse

import pytest
import torch
from PIL import Image

from bench.new_shape import (
    ATTRIBUTES,
    TUNE_POSITIONS,
    _count,
    _positions,
    _scales,
    _share,
    drawn_by_size,
    held_out_star_prompts,
    kept,
    loss_mask,
    phrased,
    tuning_scenes,
    tuning_sizes,
    write_data,
)
from imagen.eval import analyze
from imagen.images import to_tensor
from imagen.shapes import ALL_SHAPES, parse_caption, render


def test_the_tuning_data_names_the_star_by_the_phrase(tmp_path):
    info = write_data(tmp_path, "sks triangle", TUNE_POSITIONS)
    captions = sorted(tmp_path.glob("*.txt"))
    assert info["images"] == len(captions) == len(list(tmp_path.glob("*.png"))) == 40
    texts = [c.read_text().strip() for c in captions]
    assert all(" sks triangle at " in t and "star" not in t for t in texts), texts[:3]
    assert Image.open(tmp_path / "00.png").size == (64, 64)
    prompt = held_out_star_prompts(1)[0]
    assert phrased(prompt, "star") == prompt
    assert phrased(prompt, "sks triangle") == prompt.replace("star", "sks triangle")


def test_the_held_out_prompts_use_only_positions_the_tuning_data_never_shows(tmp_path):
    positions = _positions("top left, top,center,right,bottom left")
    info = write_data(tmp_path, "star", positions)
    assert info["images"] == 40 and info["held_out_positions"] == ("top right", "left", "bottom", "bottom right")
    tuned = {t.read_text().split(" at the ")[1].split(" on ")[0] for t in tmp_path.glob("*.txt")}
    assert tuned == set(positions)
    for prompt in held_out_star_prompts(32, positions):
        assert prompt.split(" at the ")[1].split(" on ")[0] in info["held_out_positions"], prompt
    for bad in ("top, middle", ",".join(["top left", "top", "top right", "left", "center", "right", "bottom left",
                                         "bottom", "bottom right"])):
        with pytest.raises(argparse.ArgumentTypeError, match="leaving at least one out"):
            _positions(bad)


def test_kept_is_each_score_as_a_share_of_the_shipped_models():
    shipped = dict.fromkeys(ATTRIBUTES, 1.0) | {"shape": 0.8, "overall": 0.0}
    original = dict.fromkeys(ATTRIBUTES, 0.5) | {"shape": 0.6, "overall": 0.0}
    shares = kept(original, shipped)
    assert shares["shape"] == 0.75 and shares["background"] == 0.5 and shares["overall"] == 0.0


def test_adapter_scales_are_positive_numbers_or_one_clear_error():
    assert _scales("1,0.75,0.5") == [1.0, 0.75, 0.5]
    for bad in ("1,x", "0,1", "-0.5", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive scales"):
            _scales(bad)


def test_seeds_are_a_whole_number_or_one_clear_error():
    assert _count("3") == 3
    for bad in ("0", "-1", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number of seeds"):
            _count(bad)


def test_jittered_tuning_stars_move_inside_their_cells_with_the_same_captions(tmp_path):
    still, moved = tuning_scenes(TUNE_POSITIONS), tuning_scenes(TUNE_POSITIONS, jitter=0.1)
    assert [s.caption for s in still] == [s.caption for s in moved]
    offsets = [s.objects[0].offset for s in moved]
    assert all(s.objects[0].offset == (0.0, 0.0) for s in still)
    assert sum(o != (0.0, 0.0) for o in offsets) >= 30  # a large star fills its cell: at an edge it moves inward only
    assert all(abs(x) <= 0.1 and abs(y) <= 0.1 for x, y in offsets)
    assert write_data(tmp_path, "star", TUNE_POSITIONS, jitter=0.1)["jitter"] == 0.1
    assert Image.open(tmp_path / "00.png").tobytes() != render(still[0], 64).tobytes()


def test_star_drawn_is_also_reported_per_asked_size():
    prompts = held_out_star_prompts(8)
    images = torch.stack([to_tensor(render(parse_caption(p), 64)) for p in prompts])

    def by_size():
        return drawn_by_size([analyze(image, p, ALL_SHAPES) for image, p in zip(images, prompts, strict=True)])

    assert by_size() == {"small": 1.0, "large": 1.0}
    small = [i for i, p in enumerate(prompts) if " small " in p]
    images[small[:2]] = to_tensor(render(parse_caption(prompts[small[0]].replace("star", "square")), 64))
    assert by_size() == {"small": (len(small) - 2) / len(small), "large": 1.0}


def test_the_small_share_sets_how_many_tuning_stars_are_small_with_every_place_still_shown_large(tmp_path):
    assert tuning_sizes(4, 0.5) == ["small", "large", "small", "large"]
    assert [s.objects[0].size for s in tuning_scenes()] == tuning_sizes(40, 0.5)
    scenes = tuning_scenes(TUNE_POSITIONS, jitter=0.1, small_share=0.75)
    large = [s.objects[0] for s in scenes if s.objects[0].size == "large"]
    assert len(scenes) == 40 and len(large) == 10
    assert {o.position for o in large} == set(TUNE_POSITIONS)
    assert {s.objects[0].color for s in scenes} == {o.color for o in large}
    assert write_data(tmp_path, "star", TUNE_POSITIONS, small_share=0.75)["small"] == 30
    assert sum(" small " in t.read_text() for t in tmp_path.glob("*.txt")) == 30
    assert _share("1") == 1.0
    for bad in ("1.5", "-0.1", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="share of small tuning stars"):
            _share(bad)


def test_loss_masks_cover_each_star_and_the_notches_between_its_points(tmp_path):
    import numpy as np

    from configs.schema import DataConfig
    from trainers.data import build_dataset

    info = write_data(tmp_path, "star", TUNE_POSITIONS, jitter=0.1, masks=True)
    assert info["loss_masks"] and len(list(tmp_path.glob("*-masklabel.png"))) == 40
    for index in (0, 1):  # a small star, then a large one
        scene = tuning_scenes(TUNE_POSITIONS, jitter=0.1)[index]
        star = np.asarray(render(scene, 64).convert("L")) != np.asarray(render(scene, 64).convert("L"))[0, 0]
        mask = np.asarray(Image.open(tmp_path / f"{index:02d}-masklabel.png")) == 255
        assert mask[star].all() and 1.5 < mask.sum() / star.sum() < 4, (mask.sum(), star.sum())
        assert np.array_equal(mask, np.asarray(loss_mask(scene, 64)) == 255)
    dataset = build_dataset(DataConfig(source=str(tmp_path)), 64)
    assert all("pixel_weight" in dataset[i] for i in range(3))
