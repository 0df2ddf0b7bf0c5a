"""Source specs, folder and manifest scanning, build-time caption checks (trainers/data/sources.py, build.py)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from configs.schema import DataConfig
from trainers.data import FileDataset, ShapesDataset, WebDatasetStream, build_dataset, resolve_source


def _build(source, resolution=32, **kw) -> FileDataset:
    return build_dataset(DataConfig(source=str(source)), resolution, **kw)


def test_resolve_kinds(tmp_path, image_folder, files):
    assert resolve_source("shapes").kind == "shapes"
    assert resolve_source(str(image_folder(2))).kind == "folder"
    for name in ("m.jsonl", "m.csv"):
        files.write(tmp_path / name, "")
        assert resolve_source(str(tmp_path / name)).kind == name[2:]
    for i in range(3):
        files.write(tmp_path / "shards" / f"shard-{i:03d}.tar", b"")
    source = resolve_source(str(tmp_path / "shards" / "shard-{000..002}.tar"))
    assert source.kind == "webdataset" and len(source.shards) == 3
    single = str(tmp_path / "shards" / "shard-001.tar")
    assert resolve_source(single).shards == (single,)
    assert resolve_source(str(tmp_path / "shards")).kind == "webdataset"  # a folder of .tar files


def test_bad_specs_name_the_path_and_what_is_accepted(tmp_path, files):
    for spec in (tmp_path / "missing", tmp_path / "missing.jsonl", tmp_path / "missing.tar"):
        with pytest.raises(ValueError, match="does not exist.*expected 'shapes'") as info:
            resolve_source(str(spec))
        assert str(spec) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"1 of 2 webdataset shards do not exist, first: .*shard-001\.tar"):
        files.write(tmp_path / "shard-000.tar", b"")
        resolve_source(str(tmp_path / "shard-{000..001}.tar"))
    files.write(tmp_path / "notes.yaml", "x: 1")
    with pytest.raises(ValueError, match="unknown data source .*notes.yaml"):
        resolve_source(str(tmp_path / "notes.yaml"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        resolve_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="does not exist"):
        build_dataset(DataConfig(source="shapez"), 32)


def test_build_kinds_and_size_checks(image_folder):
    assert isinstance(build_dataset(DataConfig(), 32), ShapesDataset)
    assert isinstance(_build(image_folder(2)), FileDataset)
    with pytest.raises(ValueError, match="lowres_resolution"):
        build_dataset(DataConfig(), 32, lowres_resolution=32)
    with pytest.raises(ValueError, match="crop_size"):
        build_dataset(DataConfig(), 32, crop_size=40)
    with pytest.raises(ValueError, match="multiple"):
        build_dataset(DataConfig(), 64, crop_size=30, lowres_resolution=16)
    with pytest.raises(ValueError, match="rank"):
        build_dataset(DataConfig(), 32, rank=2, world_size=2)


def test_folder_items(image_folder):
    root = image_folder(8)
    dataset = _build(root, 32)
    assert len(dataset) == 8
    keys = [e.key for e in dataset.entries]
    assert keys == sorted(keys) and "sub/img000.png" in keys and "img007.PNG" in keys
    for i in range(8):
        item = dataset[i]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["image"].min() >= -1 and item["image"].max() <= 1 and item["image"].std() > 0.1
        number = int(item["key"].split("img")[1][:3])
        assert item["caption"] == f"caption number {number}"
        assert item["skipped"] == []


def test_manifests(tmp_path, image_folder, files):
    root = image_folder(4)
    images = sorted(p.relative_to(tmp_path).as_posix() for p in root.rglob("img*") if p.suffix != ".txt")
    rows = [{"image": images[0], "caption": "first"}, {"image": str(tmp_path / images[1]), "caption": "second"},
            {"image": images[2]}, {"image": images[3], "caption": "   "}]
    lines = [json.dumps(r) for r in rows] + ["not json", "", json.dumps({"image": images[3], "caption": "fourth"})]
    files.write(tmp_path / "train.jsonl", "\n".join(lines) + "\n")
    jsonl = _build(tmp_path / "train.jsonl")
    assert [jsonl[i]["caption"] for i in range(len(jsonl))] == ["first", "second", "fourth"]
    assert dict(jsonl.report.skipped) == {"missing caption": 1, "empty caption": 1, "bad manifest row": 1}

    csv_text = "image,caption\n" + "".join(f'{p},"caption, {i}"\n' for i, p in enumerate(images))
    files.write(tmp_path / "train.csv", csv_text)
    table = _build(tmp_path / "train.csv")
    assert [table[i]["caption"] for i in range(4)] == [f"caption, {i}" for i in range(4)]
    assert table[0]["image"].shape == (3, 32, 32)
    files.write(tmp_path / "wrong.csv", "path,text\na.png,x\n")
    with pytest.raises(ValueError, match="columns 'image' and 'caption'"):
        _build(tmp_path / "wrong.csv")


def test_non_utf8_manifest_rows_are_skipped(tmp_path, image_folder, files):
    root = image_folder(3)
    images = sorted(p.relative_to(tmp_path).as_posix() for p in root.rglob("img*") if p.suffix != ".txt")
    data = b"".join(json.dumps({"image": p, "caption": f"c{i}"}).encode() + b"\n" for i, p in enumerate(images))
    data += b'{"image": "x.png", "caption": "caf\xe9"}\n'
    files.write(tmp_path / "m.jsonl", data)
    dataset = _build(tmp_path / "m.jsonl")
    assert len(dataset) == 3 and dict(dataset.report.skipped) == {"non-UTF-8 caption": 1}


def test_caption_problems_are_skipped_counted_and_warned(image_folder, files, caplog):
    root = image_folder(8)
    (root / "img001.txt").unlink()
    files.write(root / "img002.txt", " \n ")
    files.write(root / "img004.txt", b"caf\xe9 au lait")
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        dataset = _build(root)
    assert len(dataset) == 5
    assert dict(dataset.report.skipped) == {"missing caption": 1, "empty caption": 1, "non-UTF-8 caption": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert sum("skipping" in line for line in lines) == 3
    assert any("5 usable, 3 skipped" in line for line in lines)


def test_mostly_bad_captions_stop_the_build(image_folder):
    root = image_folder(6)
    for txt in list(root.rglob("*.txt"))[:4]:
        txt.unlink()
    with pytest.raises(ValueError, match=f"{root}.* mostly bad .*4 of 6.*missing caption"):
        _build(root)
    for txt in root.rglob("*.txt"):
        txt.unlink()
    with pytest.raises(ValueError, match=f"no usable training examples in {root}"):
        _build(root)


def test_webdataset_build_returns_a_stream(tmp_path, files):
    files.write(tmp_path / "one.tar", b"")
    stream = build_dataset(DataConfig(source=str(tmp_path / "one.tar")), 32, rank=1, world_size=2)
    assert isinstance(stream, WebDatasetStream) and (stream.rank, stream.world_size) == (1, 2)


def test_special_files_are_skipped_never_opened_and_long_captions_are_bounded(image_folder, files):
    import os

    from imagen.io import MAX_TEXT_BYTES
    from trainers.data.images import open_image

    root = image_folder(10)
    names = sorted(root.rglob("*.txt"))
    names[0].unlink()
    os.mkfifo(names[0])  # a FIFO as a caption: opening it would block forever
    names[1].unlink()
    names[1].mkdir()  # a directory as a caption
    names[2].unlink()
    names[2].symlink_to(names[2])  # a symlink loop
    files.write(names[3], "long " * 100_000)  # 500 kB
    dataset = _build(root)
    assert len(dataset) == 7
    assert dict(dataset.report.skipped) == {"unreadable caption": 3}
    captions = [entry.caption for entry in dataset.entries]
    assert max(len(c) for c in captions) <= MAX_TEXT_BYTES
    fifo_image = root / "fifo.png"
    os.mkfifo(fifo_image)
    with pytest.raises(Exception, match="FIFO"):
        open_image(fifo_image)


def test_prior_preservation_mixes_the_models_own_data_in(image_folder):
    from trainers.data import build_dataset
    from trainers.data.datasets import MixedDataset

    root = image_folder(6)
    dataset = build_dataset(DataConfig(source=str(root), prior_source="shapes", prior_share=0.25), 32)
    assert isinstance(dataset, MixedDataset) and len(dataset) == 8  # 6 + 6 * 0.25 / 0.75
    captions = [dataset[i]["caption"] for i in range(8)]
    assert all(c.startswith("caption number") for c in captions[:6])
    assert all(" on a " in c and "background" in c for c in captions[6:])  # shapes captions
    with pytest.raises(ValueError, match="prior_share > 0 needs a prior_source"):
        DataConfig(source=str(root), prior_share=0.25)


def _mask(path, size, box):
    """Write a loss mask of `size` to `path`, white inside `box` (left, top, right, bottom)."""
    from PIL import Image, ImageDraw

    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    mask.save(path)


def test_loss_masks_weigh_the_subject_and_follow_the_images_crop(image_folder):
    from trainers.data.images import REASONS

    root = image_folder(3)  # 48 x 40 images
    _mask(root / "sub" / "img000-masklabel.png", (48, 40), (0, 0, 23, 39))  # the left half
    dataset = build_dataset(DataConfig(source=str(root), resize="stretch", unmasked_weight=0.1), 32)
    assert len(dataset) == 3 and "sub/img000-masklabel.png" not in [e.key for e in dataset.entries]
    items = {dataset[i]["key"]: dataset[i] for i in range(3)}
    weight = items["sub/img000.png"]["pixel_weight"]
    assert weight.shape == (1, 32, 32)
    assert torch.allclose(weight[:, :, :15], torch.ones(1)) and torch.allclose(weight[:, :, 17:], torch.tensor(0.1))
    assert sum("pixel_weight" in item for item in items.values()) == 1

    # a random square crop of the image cuts its mask at the same place: the mask made from the image itself
    from PIL import Image

    image = Image.open(root / "sub" / "img000.png").convert("L").point(lambda v: 255 if v > 127 else 0)
    image.save(root / "sub" / "img000-masklabel.png")
    cropped = build_dataset(DataConfig(source=str(root), resize="random_crop", unmasked_weight=0.1), 40)
    for epoch in range(3):
        item = next(cropped[(i, 0, epoch)] for i in range(3) if cropped.entries[i].key == "sub/img000.png")
        luma = torch.tensordot(torch.tensor([0.299, 0.587, 0.114]), (item["image"] + 1) * 127.5, dims=1)
        bright = (luma > 127.5).float().unsqueeze(0)
        assert float((item["pixel_weight"] > 0.55).float().sub(bright).abs().mean()) < 0.02

    _mask(root / "sub" / "img000-masklabel.png", (40, 40), (0, 0, 9, 9))
    wrong = build_dataset(DataConfig(source=str(root)), 32)
    key = next(i for i in range(3) if wrong.entries[i].key == "sub/img000.png")
    assert wrong[key]["key"] != "sub/img000.png" and wrong[key]["skipped"][0][1] == "bad mask" in REASONS
    assert "40x40, its image 48x40" in wrong[key]["skipped"][0][2]
    with pytest.raises(ValueError, match="unmasked_weight must be in"):
        DataConfig(unmasked_weight=0.0)


def test_a_manifest_names_loss_masks_and_a_batch_mixes_masked_and_unmasked_items(tmp_path, image_folder, files):
    from trainers.data.loader import collate

    root = image_folder(2)
    images = sorted(p.relative_to(tmp_path).as_posix() for p in root.rglob("img*") if p.suffix != ".txt")
    _mask(tmp_path / "m.png", (48, 40), (0, 0, 47, 19))  # the top half
    rows = [{"image": images[0], "caption": "masked", "mask": "m.png"}, {"image": images[1], "caption": "plain"},
            {"image": images[1], "caption": "bad", "mask": 3}]
    files.write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    dataset = build_dataset(DataConfig(source=str(tmp_path / "train.jsonl"), prior_source="shapes",
                                       prior_share=0.5, resize="stretch"), 32)
    assert dict(dataset.data.report.skipped) == {"bad manifest row": 1}
    batch = collate([dataset[i] for i in range(len(dataset))])
    weight = batch["pixel_weight"]
    assert batch["caption"][:2] == ["masked", "plain"] and weight.shape == (4, 1, 32, 32)
    assert float(weight[0, :, :15].min()) == 1.0 and float(weight[0, :, 17:].max()) == pytest.approx(0.05)
    assert bool((weight[1:] == 1).all())  # no mask, and the prior's shapes: every pixel alike
    assert "pixel_weight" not in collate([dataset[1], dataset[2]])
