"""A resumable, deterministic, rank-aware loader over the data sets of this package.

Batches: `{"image": (B, 3, R, R) in [-1, 1], "caption": list[str], "key": list[str]}` plus
`"lowres": (B, 3, r, r) in [-1, 1]` for SR stages, and `"pixel_weight": (B, 1, R, R)` when an item of the batch
has a loss mask (`trainers.data.datasets`; ones for the others); B is the per-rank batch size.

Map-style sources (shapes, folder, manifests) are read as one endless sequence of global positions
0, 1, 2, ...: position p is item `order_e[p mod n]` of epoch e = p // n, where order_e is a permutation of
the n items seeded by (seed, e) (shapes: the identity, and n = 10**9, so the position is the index). Global
batch k is positions [k G, (k + 1) G) with G = B x world_size, and rank r takes the r-th slice of B: ranks
see disjoint parts of every global batch, and together all of it. Item keys carry (seed, epoch), so crops
are the same whatever the worker, rank or restart.

State (`state_dict()`, a small JSON-able dict), counted in consumed batches, not prefetched ones:
- map-style: `{"kind": "map", "seed", "epoch", "position", "size"}`, position = items of `epoch` consumed
  by all ranks together. Loading it gives exactly the batches an uninterrupted run would have produced
  next, with any number of workers; a changed world size continues from the same global position.
- streams: `{"kind": "stream", "seed", "batches", "rank", "world_size", "batch_size",
  "workers": [[epoch, raw], ...]}`, per rank (save every rank's); exact under the conditions given in
  `stream.py`, otherwise restarts the earliest epoch (with a warning).
The map-style state is the same on every rank (save it once).

Bad data: items report the bad items skipped to produce them; the loader (in the main process) logs one
warning line per distinct bad item (the first `WARN_LINES`, then one line at each power of ten) and keeps
counts (`bad_data.summary()`). If more than half of the first `CHECK_WINDOW` distinct items checked
(or of the whole data set, when smaller) are bad, it stops with a ValueError naming the source.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections import Counter
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from .datasets import MapDataset
from .stream import WebDatasetStream

logger = logging.getLogger("trainers.data")

WARN_LINES = 20
CHECK_WINDOW = 64
MAX_BAD_FRACTION = 0.5


class BadDataLog:
    """Counts of skipped items by reason, rate-limited warnings, and the mostly-bad check."""

    def __init__(self, location: str, size: int | None = None):
        self.location = location
        self.window = min(CHECK_WINDOW, size) if size else CHECK_WINDOW
        self.reasons: Counter = Counter()
        self._bad: set[str] = set()
        self._good: set[str] | None = set()  # distinct good keys, until the mostly-bad check is done

    @property
    def skipped(self) -> int:
        """Distinct bad items seen so far."""
        return len(self._bad)

    def record(self, good: list[str], skipped: list[tuple[str, str, str]]) -> None:
        """Note the good keys of a batch and the bad items skipped to make it; raise ValueError when the
        data set turns out mostly bad."""
        for key, reason, detail in skipped:
            if key in self._bad:
                continue
            self._bad.add(key)
            self.reasons[reason] += 1
            count = len(self._bad)
            if count <= WARN_LINES:
                logger.warning("data: skipped %s: %s%s", key, reason, f" ({detail})" if detail else "")
            if count == WARN_LINES or (count > WARN_LINES and str(count).rstrip("0") == "1"):
                logger.warning("data: %s (further bad items are counted, not listed)", self.summary())
        if self._good is not None:
            self._good.update(good)
            checked = len(self._good) + len(self._bad)
            if checked >= self.window:
                bad = len(self._bad)
                if bad > MAX_BAD_FRACTION * checked:
                    reason = self.reasons.most_common(1)[0][0]
                    raise ValueError(f"data set {self.location} is mostly bad: {bad} of the first {checked} "
                                     f"items checked were skipped, mostly '{reason}' ({self.summary()})")
                self._good = None

    def summary(self) -> str:
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.reasons.most_common())
        return f"{self.location}: {len(self._bad)} bad items skipped" + (f" ({reasons})" if reasons else "")


def _permutation_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"order:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class _MapBatches:
    """Batches of item keys for one rank, from global position `start` on (endless)."""

    def __init__(self, size: int, shuffle: bool, seed: int, start: int, batch_size: int, rank: int,
                 world_size: int):
        self.size, self.shuffle, self.seed, self.start = size, shuffle, seed, start
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self._order: tuple[int, torch.Tensor] | None = None

    def _index(self, epoch: int, offset: int) -> int:
        if not self.shuffle:
            return offset
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(_permutation_seed(self.seed, epoch))
            self._order = (epoch, torch.randperm(self.size, generator=generator))
        return int(self._order[1][offset])

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        position = self.start + self.rank * self.batch_size
        while True:
            keys = []
            for p in range(position, position + self.batch_size):
                epoch, offset = divmod(p, self.size)
                keys.append((self._index(epoch, offset), self.seed, epoch))
            yield keys
            position += self.batch_size * self.world_size


def collate(items: list[dict]) -> dict:
    """Stack an item list into a batch; bookkeeping (skipped items, stream positions) rides along."""
    batch = {"image": torch.stack([i["image"] for i in items]), "caption": [i["caption"] for i in items],
             "key": [i["key"] for i in items], "skipped": [s for i in items for s in i["skipped"]]}
    if "lowres" in items[0]:
        batch["lowres"] = torch.stack([i["lowres"] for i in items])
    if any("pixel_weight" in i for i in items):  # an item without a loss mask weighs every pixel alike
        batch["pixel_weight"] = torch.stack([i.get("pixel_weight", torch.ones_like(i["image"][:1])) for i in items])
    if "stream" in items[0]:
        batch["stream"] = items[-1]["stream"]
    return batch


class ResumableLoader:
    """Iterable of batches with a resumable position; see the module doc for formats and semantics.
    Each `iter()` starts from the current state (and starts fresh DataLoader workers); use one iterator
    at a time."""

    def __init__(self, dataset: MapDataset | WebDatasetStream, batch_size: int, *, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, num_workers: int = 0,
                 start_state: dict | None = None, pin_memory: bool = False):
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = dataset.rank if rank is None else rank
        self.world_size = dataset.world_size if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, world_size={self.world_size}), got {self.rank}")
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.streaming = isinstance(dataset, WebDatasetStream)
        if self.streaming and (self.rank, self.world_size) != (dataset.rank, dataset.world_size):
            raise ValueError(f"this stream was built for rank {dataset.rank} of {dataset.world_size}, not "
                             f"{self.rank} of {self.world_size}: pass rank and world_size to build_dataset")
        self.bad_data = BadDataLog(dataset.location, None if self.streaming else len(dataset))
        self._position = 0  # map-style: global items consumed
        self._batches = 0  # streams: batches consumed by this rank
        self._workers = [(0, 0)] * max(1, num_workers)
        if start_state is not None:
            self.load_state_dict(start_state)

    def state_dict(self) -> dict:
        if self.streaming:
            return {"kind": "stream", "seed": self.seed, "batches": self._batches, "rank": self.rank,
                    "world_size": self.world_size, "batch_size": self.batch_size,
                    "workers": [list(w) for w in self._workers]}
        size = len(self.dataset)
        epoch, position = divmod(self._position, size)
        return {"kind": "map", "seed": self.seed, "epoch": epoch, "position": position, "size": size}

    def load_state_dict(self, state: dict) -> None:
        kind = "stream" if self.streaming else "map"
        if state.get("kind") != kind:
            raise ValueError(f"data state of kind {state.get('kind')!r} does not fit this {kind} source")
        self.seed = int(state["seed"])
        if not self.streaming:
            if state["size"] != len(self.dataset):
                logger.warning("data: the data set has %d items, the saved state %d: resuming at the same "
                               "epoch and position, the order differs", len(self.dataset), state["size"])
            self._position = int(state["epoch"]) * len(self.dataset) + int(state["position"])
            return
        workers = [tuple(w) for w in state["workers"]]
        saved = (len(workers), state["rank"], state["world_size"], state["batch_size"])
        now = (max(1, self.num_workers), self.rank, self.world_size, self.batch_size)
        if saved != now:
            epoch = min(w[0] for w in workers)
            logger.warning("data: stream state was saved with (workers, rank, world size, batch) = %s, now %s: "
                           "restarting epoch %d", saved, now, epoch)
            workers, state = [(epoch, 0)] * max(1, self.num_workers), {**state, "batches": 0}
        self._workers = workers
        self._batches = int(state["batches"])

    def _dataloader(self) -> DataLoader:
        # a private generator: otherwise DataLoader draws its base seed from the global torch RNG on every
        # iter(), which would shift the trainer's random stream (and break bit-exact resume)
        common = {"num_workers": self.num_workers, "collate_fn": collate, "pin_memory": self.pin_memory,
                  "generator": torch.Generator().manual_seed(self.seed)}
        if self.streaming:
            stream = copy.copy(self.dataset)
            stream.seed, stream.num_workers = self.seed, max(1, self.num_workers)
            stream.rotation, stream.start = self._batches % stream.num_workers, list(self._workers)
            return DataLoader(stream, batch_size=self.batch_size, **common)
        sampler = _MapBatches(len(self.dataset), self.dataset.shuffle, self.seed, self._position,
                              self.batch_size, self.rank, self.world_size)
        return DataLoader(self.dataset, batch_sampler=sampler, **common)

    def __iter__(self) -> Iterator[dict]:
        for batch in self._dataloader():
            self.bad_data.record(batch["key"], batch.pop("skipped"))
            if self.streaming:
                worker, epoch, raw = (int(v) for v in batch.pop("stream"))
                self._workers[worker] = (epoch, raw)
                self._batches += 1
            else:
                self._position += self.batch_size * self.world_size
            yield batch


def make_loader(dataset: MapDataset | WebDatasetStream, batch_size: int, *, seed: int = 0,
                rank: int | None = None, world_size: int | None = None, num_workers: int = 0,
                start_state: dict | None = None, pin_memory: bool = False) -> ResumableLoader:
    """A `ResumableLoader` over `dataset` (from `build_dataset`): per-rank batches of `batch_size`;
    rank and world_size default to those given to build_dataset. It does its own rank sharding: do not
    pass it through `accelerator.prepare` (that would shard again)."""
    return ResumableLoader(dataset, batch_size, seed=seed, rank=rank, world_size=world_size,
                           num_workers=num_workers, start_state=start_state, pin_memory=pin_memory)
