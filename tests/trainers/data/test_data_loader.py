"""Shapes items, SR crops, and the resumable rank-aware loader over map-style sources (trainers/data)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from configs.schema import DataConfig
from imagen.images import to_tensor
from imagen.resize import downsample
from imagen.shapes import render, training_scene
from trainers.data import build_dataset, make_loader
from trainers.data.datasets import detail


def _take(loader, count):
    iterator = iter(loader)
    batches = [next(iterator) for _ in range(count)]
    del iterator
    return batches


def _assert_same(a, b):
    assert a.keys() == b.keys()
    assert a["caption"] == b["caption"] and a["key"] == b["key"]
    for name in ("image", "lowres"):
        if name in a:
            assert torch.equal(a[name], b[name])


def test_shapes_items_are_deterministic_renders():
    config = DataConfig(shapes_seed=3, two_object_prob=0.5)
    dataset = build_dataset(config, 32)
    item = dataset[7]
    scene = training_scene(3, 7, 0.5)
    assert item["caption"] == scene.caption and item["key"] == "shapes:3:7"
    assert torch.equal(item["image"], to_tensor(render(scene, 32)))
    assert torch.equal(build_dataset(config, 32)[7]["image"], item["image"])
    other = build_dataset(DataConfig(shapes_seed=4, two_object_prob=0.5), 32)
    assert [other[i]["caption"] for i in range(8)] != [dataset[i]["caption"] for i in range(8)]
    assert len(dataset) == 10**9 and dataset[10**9 - 1]["image"].shape == (3, 32, 32)


def test_position_jitter_moves_objects_inside_their_cells_and_the_image():
    from imagen.eval import judge
    from imagen.shapes import SIZES, object_box

    plain = [training_scene(0, i) for i in range(200)]
    assert all(o.offset == (0.0, 0.0) for s in plain for o in s.objects)
    jitter = 1 / 10
    scenes = [training_scene(0, i, jitter=jitter) for i in range(200)]
    assert sum(a.caption == b.caption for a, b in zip(plain, scenes, strict=True)) >= 190  # the same captions, moved
    offsets = [o.offset for s in scenes for o in s.objects]
    assert max(abs(v) for xy in offsets for v in xy) <= jitter
    assert len(set(offsets)) > 0.9 * len(offsets)  # all over (a large corner object moves inwards only)
    small = [o.offset for s in scenes for o in s.objects if o.size == "small"]
    assert min(v for xy in small for v in xy) < -0.08 and max(v for xy in small for v in xy) > 0.08
    for scene in scenes:
        for obj in scene.objects:
            left, top, right, bottom = object_box(obj, 1.0)
            assert min(left, top) >= -1e-9 and max(right, bottom) <= 1 + 1e-9, obj
            assert right - left == pytest.approx(SIZES[obj.size])
    one = [s for s in scenes if len(s.objects) == 1][:24]
    scores = [judge(render(s, 64), s.caption) for s in one]  # the judge still reads the captioned cell
    assert sum(r["position"] for r in scores) == len(one)
    item = build_dataset(DataConfig(position_jitter=jitter), 64)[5]
    assert torch.equal(item["image"], to_tensor(render(scenes[5], 64)))
    with pytest.raises(ValueError, match="position_jitter must be in"):
        DataConfig(position_jitter=0.3)


def test_shapes_lowres_is_the_scene_rendered_at_low_resolution():
    dataset = build_dataset(DataConfig(), 64, lowres_resolution=16)
    item = dataset[(3, 0, 0)]
    assert item["image"].shape == (3, 64, 64) and item["lowres"].shape == (3, 16, 16)
    scene = training_scene(0, 3)
    assert torch.equal(item["image"], to_tensor(render(scene, 64)))
    assert torch.equal(item["lowres"], to_tensor(render(scene, 16)))  # what the base stage learns to draw
    assert (downsample(item["image"], 16) - item["lowres"]).abs().mean() < 0.05  # ~ the antialiased image
    for name in ("image", "lowres"):
        assert item[name].min() >= -1 and item[name].max() <= 1


@pytest.mark.parametrize("source", ["shapes", "folder"])
def test_sr_crops_match_the_lowres_crop(source, image_folder):
    spec = "shapes" if source == "shapes" else str(image_folder(4, size=(80, 72)))
    config = DataConfig(source=spec, resize="random_crop")
    dataset = build_dataset(config, 64, crop_size=32, lowres_resolution=16)
    full = build_dataset(config, 64, lowres_resolution=16)
    offsets = set()
    for index in range(4):
        for seed in (0, 1):
            item = dataset[(index, seed, 0)]
            assert item["image"].shape == (3, 32, 32) and item["lowres"].shape == (3, 8, 8)
            # downsampling the crop gives the low-res crop: exactly away from the crop's border, where
            # the 4x antialiasing kernel (2 low-res pixels wide) does not reach outside the crop (shapes
            # render the low-res crop directly, box-filtered: close to it)
            down = downsample(item["image"], 8)
            atol = 0.15 if source == "shapes" else 1e-5
            assert torch.allclose(down[:, 2:-2, 2:-2], item["lowres"][:, 2:-2, 2:-2], atol=atol)
            assert (down - item["lowres"]).abs().mean() < 0.1
            # the crop is a 4-aligned window of the full image (same random_crop draw comes first)
            whole = full[(index, seed, 0)]["image"]
            windows = whole.unfold(1, 32, 4).unfold(2, 32, 4)  # (3, 9, 9, 32, 32)
            # (shapes render the crop on its own: polygon edges may rasterise a level or two apart)
            error = (windows - item["image"][:, None, None]).abs().flatten(3).mean(-1).mean(0)
            match = (error < (0.01 if source == "shapes" else 1e-7)).nonzero()
            assert len(match) >= 1
            offsets.add(tuple(match[0].tolist()))
            assert torch.equal(dataset[(index, seed, 0)]["image"], item["image"])  # same key, same crop
    assert len(offsets) > 1


@pytest.mark.parametrize("source", ["shapes", "folder"])
def test_crop_candidates_choose_the_most_detailed_crop(source, image_folder):
    spec = "shapes" if source == "shapes" else str(image_folder(4, size=(80, 72)))
    config = DataConfig(source=spec, resize="random_crop")
    sizes = {"crop_size": 32, "lowres_resolution": 32}
    uniform = build_dataset(config, 128, **sizes)
    chosen = build_dataset(config, 128, crop_candidates=8, **sizes)
    full = build_dataset(config, 128, lowres_resolution=32)
    edged = {"uniform": 0, "chosen": 0}
    for index in range(24):
        key = (index % 4 if source == "folder" else index, index, 0)
        item, whole = chosen[key], full[key]
        assert torch.equal(chosen[key]["image"], item["image"])  # still a pure function of the key
        # the low-res crop is the window of the whole low-res image that covers the crop
        windows = whole["lowres"].unfold(1, 8, 1).unfold(2, 8, 1)
        error = (windows - item["lowres"][:, None, None]).abs().flatten(3).amax(-1).amax(0)
        assert error.min() < 1e-6
        # never less detailed than the uniform draw (the first candidate) of the same key
        assert detail(item["lowres"]) >= detail(uniform[key]["lowres"]) - 1e-6
        edged["uniform"] += detail(uniform[key]["lowres"]) > 1e-3
        edged["chosen"] += detail(item["lowres"]) > 1e-3
    assert edged["chosen"] > edged["uniform"] or edged["chosen"] == 24
    with pytest.raises(ValueError, match="crop_candidates"):
        build_dataset(config, 128, crop_candidates=0, **sizes)


def test_lowres_without_crop_and_crop_without_lowres():
    item = build_dataset(DataConfig(), 32, crop_size=16)[(0, 5, 2)]
    assert item["image"].shape == (3, 16, 16) and "lowres" not in item
    item = build_dataset(DataConfig(), 64, crop_size=64, lowres_resolution=16)[0]
    assert item["image"].shape == (3, 64, 64) and item["lowres"].shape == (3, 16, 16)


def _loader(spec, workers, state=None, *, rank=0, world=1, batch=3, crop=16):
    config = DataConfig(source=spec, resize="random_crop")
    dataset = build_dataset(config, 32, crop_size=crop, lowres_resolution=8, rank=rank, world_size=world)
    return make_loader(dataset, batch, seed=11, num_workers=workers, start_state=state)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("source", ["shapes", "folder"])
def test_resume_gives_exactly_the_next_batches(source, workers, image_folder):
    spec = "shapes" if source == "shapes" else str(image_folder(7))  # 7 items, batch 3: epochs cross batches
    uninterrupted = _take(_loader(spec, workers), 6)
    first = _loader(spec, workers)
    _take(first, 4)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["seed"] == 11 and state["epoch"] * state["size"] + state["position"] == 12
    resumed = _take(_loader(spec, workers, state), 2)
    for a, b in zip(uninterrupted[4:], resumed, strict=True):
        _assert_same(a, b)
    assert resumed[0]["image"].shape == (3, 3, 16, 16) and resumed[0]["lowres"].shape == (3, 3, 4, 4)


def test_worker_count_does_not_change_the_batches(image_folder):
    spec = str(image_folder(5))
    for a, b in zip(_take(_loader(spec, 0), 4), _take(_loader(spec, 2), 4), strict=True):
        _assert_same(a, b)


def test_folder_epochs_are_seeded_permutations(image_folder):
    spec = str(image_folder(6))
    batches = _take(_loader(spec, 0, batch=3), 4)
    keys = [k for b in batches for k in b["key"]]
    assert sorted(keys[:6]) == sorted(keys[6:]) and len(set(keys[:6])) == 6 and keys[:6] != keys[6:]


@pytest.mark.parametrize("source", ["shapes", "folder"])
def test_ranks_get_disjoint_covering_parts_of_each_global_batch(source, image_folder):
    spec = "shapes" if source == "shapes" else str(image_folder(12))
    single = _take(_loader(spec, 0, world=1, batch=4), 3)
    ranks = [_take(_loader(spec, 0, rank=r, world=2, batch=2), 3) for r in range(2)]
    for step in range(3):
        keys = [ranks[r][step]["key"] for r in range(2)]
        assert not set(keys[0]) & set(keys[1])
        assert keys[0] + keys[1] == single[step]["key"]
        images = torch.cat([ranks[r][step]["image"] for r in range(2)])
        assert torch.equal(images, single[step]["image"])
    if source == "folder":
        seen = {k for r in range(2) for b in ranks[r] for k in b["key"]}
        assert len(seen) == 12


def _bad_folder(root, files, good: int):
    """`good` good images and one of each kind of bad image, all with captions."""
    for i in range(good):
        files.write(root / f"good{i:02d}.png", files.image_bytes("PNG", size=(40, 40), seed=i))
    jpeg = files.image_bytes("JPEG", size=(64, 64))
    bad = {"corrupt.png": b"garbage" * 20, "truncated.jpg": jpeg[: len(jpeg) // 2], "bomb.png": files.bomb_png(),
           "tiny.png": files.image_bytes("PNG", size=(40, 5))}
    for name, data in bad.items():
        files.write(root / name, data)
    for image in list(root.iterdir()):
        files.write(image.with_suffix(".txt"), f"caption of {image.stem}")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_images_are_skipped_counted_and_warned(tmp_path, files, caplog, workers):
    spec = str(_bad_folder(tmp_path / "mixed", files, good=8))
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        loader = _loader(spec, workers, batch=4, crop=0)
        batches = _take(loader, 6)  # 2 epochs of 12 items
    keys = [k for b in batches for k in b["key"]]
    assert all(k.startswith("good") for k in keys)
    assert {k for k in keys} == {f"good{i:02d}.png" for i in range(8)}
    assert dict(loader.bad_data.reasons) == {"unreadable image": 1, "truncated image": 1, "decompression bomb": 1,
                                             "image too small": 1}
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 4  # one line per distinct bad item, not per encounter
    assert "4 bad items skipped" in loader.bad_data.summary()
    again = _take(_loader(spec, workers, batch=4, crop=0), 6)
    assert [b["key"] for b in again] == [b["key"] for b in batches]  # replacement is deterministic


def test_missing_image_file_in_manifest_is_skipped(tmp_path, files):
    files.write(tmp_path / "a.png", files.image_bytes("PNG", size=(40, 40)))
    lines = [{"image": "a.png", "caption": "present"}, {"image": "gone.png", "caption": "missing"}]
    files.write(tmp_path / "m.jsonl", "\n".join(json.dumps(x) for x in lines))
    loader = _loader(str(tmp_path / "m.jsonl"), 0, batch=2, crop=0)
    batch = _take(loader, 1)[0]
    assert batch["caption"] == ["present", "present"]
    assert dict(loader.bad_data.reasons) == {"missing image": 1}


def test_mostly_bad_data_stops_with_a_clear_error(tmp_path, files):
    spec = str(_bad_folder(tmp_path / "mostly", files, good=3))  # 4 bad of 7
    with pytest.raises(ValueError, match=f"data set {spec} is mostly bad: 4 of the first 7"):
        _take(_loader(spec, 0, batch=2, crop=0), 10)
    only_bad = tmp_path / "only"
    files.write(only_bad / "x.png", b"not a png")
    files.write(only_bad / "x.txt", "caption")
    with pytest.raises(ValueError, match=f"no usable image in {only_bad}"):
        _take(_loader(str(only_bad), 0, batch=1, crop=0), 1)


def test_state_of_another_kind_is_refused(image_folder):
    loader = _loader("shapes", 0)
    with pytest.raises(ValueError, match="kind"):
        loader.load_state_dict({"kind": "stream", "seed": 0})
    with pytest.raises(ValueError, match="rank"):
        make_loader(build_dataset(DataConfig(), 32), 2, rank=3, world_size=2)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_leaves_the_global_rng_alone(workers):
    torch.manual_seed(123)
    _take(_loader("shapes", workers), 2)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))
