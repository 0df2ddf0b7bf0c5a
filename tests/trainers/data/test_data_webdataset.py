"""Webdataset tar shards: items, epochs, rank/worker splits, resume, bad samples (trainers/data/stream.py)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import webdataset as wds

from configs.schema import DataConfig
from trainers.data import build_dataset, make_loader


def _write_shards(root, files, shards=4, per_shard=5, bad=None):
    """shard-000.tar ... with samples s{shard}_{i}: a PNG, JPEG or WEBP and a .txt caption. `bad` maps a key
    to replacements: "image" replaces the image's bytes (None drops it), other names add or drop files."""
    root.mkdir(parents=True, exist_ok=True)
    bad = bad or {}
    for s in range(shards):
        with wds.TarWriter(str(root / f"shard-{s:03d}.tar")) as writer:
            for i in range(per_shard):
                key = f"s{s}_{i}"
                fmt = ("png", "jpg", "webp")[i % 3]
                image = files.image_bytes(files.FORMATS["." + fmt], size=(40, 36), seed=s * 100 + i)
                sample = {"__key__": key, fmt: image, "txt": f"caption {key}".encode()}
                for name, value in bad.get(key, {}).items():
                    sample[fmt if name == "image" else name] = value
                writer.write({k: v for k, v in sample.items() if v is not None})
    return str(root / f"shard-{{000..{shards - 1:03d}}}.tar")


def _stream(spec, rank=0, world=1, **kw):
    return build_dataset(DataConfig(source=spec, resize="random_crop"), 32, rank=rank, world_size=world, **kw)


def _epoch_keys(stream, epoch=0):
    """Keys of one epoch of a stream read directly (single worker)."""
    keys = []
    for item in stream:
        if int(item["stream"][1]) > epoch:
            return keys
        if int(item["stream"][1]) == epoch:
            keys.append(item["key"].rsplit(":", 1)[1])
    raise AssertionError("unreachable: streams are endless")


def _take(loader, count):
    iterator = iter(loader)
    batches = [next(iterator) for _ in range(count)]
    del iterator
    return batches


def test_items_and_epochs(tmp_path, files):
    spec = _write_shards(tmp_path / "wds", files)
    stream = _stream(spec, crop_size=16, lowres_resolution=8)
    item = next(iter(stream))
    assert item["image"].shape == (3, 16, 16) and item["lowres"].shape == (3, 4, 4)
    assert item["image"].min() >= -1 and item["image"].max() <= 1
    assert item["caption"] == "caption " + item["key"].rsplit(":", 1)[1]
    first = _epoch_keys(stream, 0)
    assert sorted(first) == sorted(f"s{s}_{i}" for s in range(4) for i in range(5))
    second = _epoch_keys(stream, 1)
    assert sorted(second) == sorted(first) and second != first  # reshuffled each epoch
    assert _epoch_keys(_stream(spec), 0) == first  # deterministic


@pytest.mark.parametrize("shards", [4, 1])
def test_ranks_and_workers_split_disjoint_and_covering(tmp_path, files, shards):
    spec = _write_shards(tmp_path / "wds", files, shards=shards, per_shard=20 // shards)
    if shards == 1:
        spec = spec.replace("{000..000}", "000")
    parts = []
    for rank in range(2):
        for worker in range(2):
            stream = _stream(spec, rank=rank, world=2)
            stream.num_workers, stream.rotation, stream.start = 2, worker, [(0, 0)] * 2  # worker `worker` of 2
            parts.append(set(_epoch_keys(stream)))
    assert all(parts) and sum(len(p) for p in parts) == 20
    assert set().union(*parts) == {f"s{s}_{i}" for s in range(shards) for i in range(20 // shards)}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_exactly_the_next_batches(tmp_path, files, workers):
    spec = _write_shards(tmp_path / "wds", files, shards=4, per_shard=4)

    def loader(state=None):
        return make_loader(_stream(spec, crop_size=16), 3, seed=5, num_workers=workers, start_state=state)

    uninterrupted = _take(loader(), 9)  # crosses epoch ends in every worker
    first = loader()
    _take(first, 5)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["kind"] == "stream" and state["batches"] == 5 and len(state["workers"]) == max(1, workers)
    resumed = _take(loader(state), 4)
    for a, b in zip(uninterrupted[5:], resumed, strict=True):
        assert a["key"] == b["key"] and a["caption"] == b["caption"]
        assert torch.equal(a["image"], b["image"])


def test_resume_with_other_worker_count_warns_and_restarts_the_epoch(tmp_path, files, caplog):
    spec = _write_shards(tmp_path / "wds", files, shards=2, per_shard=4)
    first = make_loader(_stream(spec), 2, num_workers=0)
    _take(first, 2)
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        resumed = make_loader(_stream(spec), 2, num_workers=2, start_state=first.state_dict())
    assert any("restarting epoch 0" in r.getMessage() for r in caplog.records)
    assert resumed.state_dict()["workers"] == [[0, 0], [0, 0]]


def test_bad_samples_are_skipped_and_counted(tmp_path, files):
    jpeg = files.image_bytes("JPEG", size=(64, 64))
    bad = {"s0_1": {"image": b"garbage" * 10}, "s0_2": {"image": jpeg[: len(jpeg) // 2]},
           "s1_0": {"txt": None}, "s1_1": {"txt": b"\xff\xfe"}, "s1_2": {"image": files.bomb_png()},
           "s1_3": {"image": None}}
    spec = _write_shards(tmp_path / "wds", files, shards=2, per_shard=6, bad=bad)
    loader = make_loader(_stream(spec), 3, num_workers=0)
    keys = [k.rsplit(":", 1)[1] for b in _take(loader, 4) for k in b["key"]]
    assert not set(keys) & set(bad) and len(set(keys)) == 6
    assert dict(loader.bad_data.reasons) == {"unreadable image": 1, "truncated image": 1, "missing caption": 1,
                                             "non-UTF-8 caption": 1, "decompression bomb": 1, "missing image": 1}


def test_all_bad_shards_stop_with_a_clear_error(tmp_path, files):
    bad = {f"s0_{i}": {"image": b"garbage"} for i in range(3)}
    spec = _write_shards(tmp_path / "wds", files, shards=1, per_shard=3, bad=bad).replace("{000..000}", "000")
    with pytest.raises(ValueError, match="no usable samples in webdataset .*shard-000.tar.*all 3 samples were bad"):
        _take(make_loader(_stream(spec), 2), 1)


def test_unreadable_shard_is_reported_and_skipped(tmp_path, files, caplog):
    spec = _write_shards(tmp_path / "wds", files, shards=2, per_shard=3)
    files.write(tmp_path / "wds" / "shard-002.tar", b"not a tar file" * 100)
    loader = make_loader(_stream(spec.replace("..001", "..002")), 3)
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        keys = [k.rsplit(":", 1)[1] for b in _take(loader, 4) for k in b["key"]]
    assert set(keys) == {f"s{s}_{i}" for s in range(2) for i in range(3)}
    assert dict(loader.bad_data.reasons) == {"unreadable shard": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "shard-002.tar: unreadable shard" in lines[0]
