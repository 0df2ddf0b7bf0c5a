"""Webdataset tar shards, streamed: for data sets that do not fit on one machine.

A sample is the files of a tar sharing a key: the image (`jpg`, `jpeg`, `png` or `webp`) and the caption
(`txt`, or `caption`, or `json` with a "caption" field). Decoding and checks are the same as for files
(`images.py`); bad samples are skipped and reported with the next good one. A shard that is not a
readable tar is reported as "unreadable shard"; a truncated one just ends early (a tar stream cannot tell
that members are missing).

Order and splitting. The stream is endless: epoch after epoch. In epoch e every worker shuffles the same
shard list with a seed derived from (seed, e) (so `shardshuffle=False` is passed to webdataset: the
shuffle is ours and deterministic), then takes its part, `islice(shards, rank, None, world_size)` for the
node and `islice(..., worker, None, num_workers)` for the DataLoader worker (webdataset's split_by_node and
split_by_worker, with rank and worker given explicitly instead of read from the environment). When there
are fewer shards than ranks (or workers), the split falls back to samples: every reader reads all of the
node's shards and keeps every k-th sample (correct, but reads k times the data). Samples are then mixed
in a shuffle buffer seeded by (seed, epoch, rank, worker).

Resume. Each (logical) worker's position is (epoch, raw samples read in that epoch); the loader records
it for consumed batches only. Resuming with the same seed, shards, world size, batch size and number of
workers replays each worker's stream without decoding the samples it had already read (tar bytes are
still read) and rotates the worker ids so batches come in the same order: exactly the same batches.
With a different world size or number of workers the positions do not map; the loader then warns and
starts again from the beginning of the earliest epoch in the saved state (some samples are seen again).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from itertools import islice

import torch
from torch.utils.data import IterableDataset, get_worker_info

from imagen.images import to_tensor

from .datasets import Target, item_rng
from .images import BadSample, decode_caption, fit_square, min_side, open_image

logger = logging.getLogger("trainers.data")

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
SHUFFLE_BUFFER = 256  # samples held for shuffling, per worker


def split_explicit(src, index: int, count: int):
    """`islice(src, index, None, count)`: webdataset's split_by_node / split_by_worker with the rank
    (or worker id) given explicitly."""
    yield from islice(src, index, None, count) if count > 1 else src


def _epoch_seed(seed: int, epoch: int, *parts) -> str:
    return ":".join(str(p) for p in ("stream", seed, epoch, *parts))


def _caption(sample: dict) -> str:
    if "txt" in sample:
        return decode_caption(sample["txt"])
    if "caption" in sample:
        return decode_caption(sample["caption"])
    if "json" in sample:
        import json

        try:
            meta = json.loads(sample["json"])
        except ValueError as error:
            raise BadSample("bad manifest row", f"json: {error}") from None
        caption = meta.get("caption") if isinstance(meta, dict) else None
        if caption is not None and not isinstance(caption, str):
            raise BadSample("bad manifest row", "json caption is not text")
        return decode_caption(caption)
    raise BadSample("missing caption", "no txt, caption or json file in the sample")


class WebDatasetStream(IterableDataset):
    """Endless stream of items (same format as the map-style data sets) from webdataset shards, split
    across ranks and DataLoader workers. Use through `make_loader`, which sets `start` for resuming."""

    def __init__(self, shards: tuple[str, ...], location: str, target: Target, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = SHUFFLE_BUFFER):
        if not shards:
            raise ValueError(f"no webdataset shards in {location}")
        self.shards = tuple(shards)
        self.location = location
        self.target = target
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = shuffle_buffer
        # set by the loader before iterating: seed, logical worker count, rotation, start positions
        self.seed = 0
        self.num_workers = 1
        self.rotation = 0
        self.start: list[tuple[int, int]] = [(0, 0)]

    def _split(self, epoch: int, worker: int) -> tuple[list[str], int, int]:
        """(this reader's shards in order, sample stride, sample offset) for one epoch."""
        shards = list(self.shards)
        random.Random(_epoch_seed(self.seed, epoch, "shards")).shuffle(shards)
        stride, offset = 1, 0
        if len(shards) >= self.world_size:
            shards = list(split_explicit(shards, self.rank, self.world_size))
        else:
            stride, offset = self.world_size, self.rank
        if stride == 1 and len(shards) >= self.num_workers:
            shards = list(split_explicit(shards, worker, self.num_workers))
        else:
            stride, offset = stride * self.num_workers, offset * self.num_workers + worker
        return shards, stride, offset

    def _raw(self, epoch: int, worker: int, errors: list) -> Iterator[dict]:
        """The undecoded samples this reader gets in `epoch`, shuffled."""
        import webdataset as wds

        shards, stride, offset = self._split(epoch, worker)

        def handler(error: Exception) -> bool:  # a tar that cannot be read: report it, go on with the next
            args = [a for a in getattr(error, "args", ()) if isinstance(a, str)]
            shard = next((a for a in args if a in shards), self.location)
            errors.append((shard, "unreadable shard", f"{type(error).__name__}: {error}"))
            return True

        pipeline = wds.WebDataset(shards, shardshuffle=False, nodesplitter=None, workersplitter=None,
                                  handler=handler, empty_check=False, seed=0)
        samples = (s for i, s in enumerate(pipeline) if i % stride == offset)
        rng = random.Random(_epoch_seed(self.seed, epoch, "samples", self.rank, worker))
        buffer: list[dict] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def _decode(self, sample: dict, epoch: int) -> dict:
        key = f"{sample.get('__url__', self.location)}:{sample.get('__key__', '?')}"
        image_key = next((k for k in IMAGE_KEYS if k in sample), None)
        if image_key is None:
            raise BadSample("missing image", f"{key}: no {'/'.join(IMAGE_KEYS)} file in the sample")
        caption = _caption(sample)
        target = self.target
        rng = item_rng(self.seed, epoch, key)
        image = open_image(sample[image_key], min_size=min_side(target.resolution))
        image = fit_square(image, target.resolution, target.resize, rng)
        item = target.finish(to_tensor(image), rng)
        item.update(caption=caption, key=key)
        return item

    def _worker(self) -> int:
        """The logical worker this process plays: DataLoader worker id + rotation (see module doc)."""
        info = get_worker_info()
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(f"stream prepared for {self.num_workers} workers, running in {info.num_workers}")
        return ((info.id if info is not None else 0) + self.rotation) % self.num_workers

    def __iter__(self) -> Iterator[dict]:
        worker = self._worker()
        epoch, skip = self.start[worker]
        errors: list = []  # bad samples since the last good one, reported with the next good one
        while True:
            good = raw = 0
            for raw, sample in enumerate(self._raw(epoch, worker, errors), 1):
                if raw <= skip:
                    continue
                try:
                    item = self._decode(sample, epoch)
                except BadSample as error:
                    errors.append((f"{sample.get('__url__', '')}:{sample.get('__key__', '?')}", error.reason,
                                   error.detail))
                    continue
                good += 1
                item.update(skipped=list(errors), stream=torch.tensor([worker, epoch, raw]))
                errors.clear()
                yield item
            if good == 0 and skip == 0:
                what = f"all {raw} samples were bad" if raw else "it got no samples"
                first = f" (first: {errors[0][0]}: {errors[0][1]})" if errors else ""
                raise ValueError(f"no usable samples in webdataset {self.location} for rank {self.rank} "
                                 f"worker {worker} in epoch {epoch}: {what}{first}")
            epoch, skip = epoch + 1, 0
