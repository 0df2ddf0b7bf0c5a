"""Index-addressed (map-style) data sets: the procedural shapes world and image files with captions.

An item is addressed by a key `(index, seed, epoch)` (a bare int means `(index, 0, 0)`); everything random
about it (random_crop offsets, the SR crop) comes from `random.Random` seeded by that key, so an item is a
pure function of its key: the same in any worker, process or resumed run.

With `crop_candidates` > 1 a crop is the most detailed of that many random crops (the low-res window's mean
absolute difference between neighbouring pixels): on images that are mostly flat colour, uniform crops of a
large image rarely hold an edge (about one 128 px crop in seven of a 1024 px shapes scene), and edges are what
an SR stage is for.

Items: `{"image": (3, R, R) in [-1, 1], "caption": str, "key": str, "skipped": [(key, reason, detail)]}`
plus `"lowres": (3, r, r) in [-1, 1]` for SR stages, where R is the crop size (or the resolution) and r
the matching low-res size, and `"pixel_weight": (1, R, R)` for an image with a loss mask: 1 on the subject
(white), `unmasked_weight` on the rest, grey in between, cut and scaled as the image is. `skipped` lists the bad
items passed over to produce this one: an unusable item is replaced by the next usable index (index + 1, + 2,
..., wrapping), deterministically; the loader counts and reports them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from configs.schema import DataConfig
from imagen.images import to_tensor
from imagen.resize import downsample
from imagen.shapes import Scene, render, training_scene

from .images import BadSample, min_side, open_image, open_mask, resize_box, square_box
from .sources import Entry, ScanReport

SHAPES_LENGTH = 10**9  # the shapes world is unbounded; this many items is "infinite" for training
MAX_CONSECUTIVE_BAD = 100  # an item whose next this-many neighbours are all bad stops training


@dataclass(frozen=True)
class Target:
    """What one stage trains on: images at `resolution`, optionally cropped to `crop_size`, with the
    low-res conditioning image at `lowres_resolution` (0 = base stage)."""

    resolution: int
    crop_size: int = 0
    lowres_resolution: int = 0
    resize: str = "center_crop"
    crop_candidates: int = 1

    def __post_init__(self):
        res, crop, low = self.resolution, self.crop_size, self.lowres_resolution
        if self.crop_candidates < 1:
            raise ValueError(f"crop_candidates must be >= 1, got {self.crop_candidates}")
        if res <= 0:
            raise ValueError(f"resolution must be positive, got {res}")
        if not 0 <= crop <= res:
            raise ValueError(f"crop_size must be in [0, resolution={res}], got {crop}")
        if not 0 <= low < res:
            raise ValueError(f"lowres_resolution must be in [0, resolution={res}), got {low}")
        if crop and low and (res % low or crop % (res // low)):
            raise ValueError(f"crop_size {crop} with lowres_resolution {low} needs resolution {res} to be a "
                             f"multiple of {low} and crop_size a multiple of {res // max(low, 1)}, so the "
                             "low-res crop covers exactly the same region")
        if self.resize not in ("center_crop", "random_crop", "stretch"):
            raise ValueError(f"unknown resize mode {self.resize!r}: use center_crop, random_crop or stretch")

    @property
    def size(self) -> int:
        """Side of the training image."""
        return self.crop_size or self.resolution

    @property
    def lowres_size(self) -> int:
        """Side of the low-res image (0 = none)."""
        if not self.lowres_resolution:
            return 0
        return self.crop_size * self.lowres_resolution // self.resolution if self.crop_size else self.lowres_resolution

    @property
    def factor(self) -> int:
        """Full-resolution pixels per low-res pixel (1 for a base stage)."""
        return self.resolution // self.lowres_resolution if self.lowres_resolution else 1

    def crop_offsets(self, rng: random.Random, whole: torch.Tensor | None = None) -> tuple[int, int]:
        """(top, left) of a random crop, on the low-res pixel grid; (0, 0) without a crop. With
        `crop_candidates` > 1, the candidate whose window of `whole` (the whole image at the low resolution,
        or at the full one for a base stage) has the most detail."""
        if not self.crop_size or self.crop_size >= self.resolution:
            return 0, 0
        factor = self.factor
        steps = (self.resolution - self.crop_size) // factor
        candidates = [(rng.randint(0, steps) * factor, rng.randint(0, steps) * factor)
                      for _ in range(self.crop_candidates)]
        if len(candidates) == 1:
            return candidates[0]
        return max(candidates, key=lambda offset: detail(self.window(whole, *offset)))

    def window(self, whole: torch.Tensor, top: int, left: int) -> torch.Tensor:
        """The part of `whole` (the whole image at the low resolution, or at the full one for a base stage) that
        the crop at full-resolution offset (top, left) covers."""
        factor, side = self.factor, self.size // self.factor
        return whole[:, top // factor:top // factor + side, left // factor:left // factor + side]

    def finish(self, image: torch.Tensor, rng: random.Random, pixel_weight: torch.Tensor | None = None) -> dict:
        """From a full-resolution image (3, R, R) (and its loss mask's `pixel_weight` (1, R, R)): the low-res
        image (the whole image, antialiased down to `lowres_resolution`), then the random crop of them all,
        aligned on the low-res pixel grid."""
        lowres = downsample(image, self.lowres_resolution) if self.lowres_resolution else None
        crop = self.crop_size
        if crop and crop < self.resolution:
            top, left = self.crop_offsets(rng, image if lowres is None else lowres)
            image = image[:, top:top + crop, left:left + crop]
            if lowres is not None:
                lowres = self.window(lowres, top, left)
            if pixel_weight is not None:
                pixel_weight = pixel_weight[:, top:top + crop, left:left + crop]
        item = {"image": image.contiguous()}
        if lowres is not None:
            item["lowres"] = lowres.contiguous()
        if pixel_weight is not None:
            item["pixel_weight"] = pixel_weight.contiguous()
        return item


def detail(window: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels of (C, H, W)."""
    return float((window[:, 1:] - window[:, :-1]).abs().mean() + (window[:, :, 1:] - window[:, :, :-1]).abs().mean())


def item_rng(seed: int, epoch: int, index: int | str) -> random.Random:
    """The random stream of one item (crop offsets), derived from (seed, epoch, index) only."""
    return random.Random(f"item:{seed}:{epoch}:{index}")


class MapDataset(Dataset):
    """Base of the index-addressed sources. Subclasses implement `_load(index, rng) -> (image, caption,
    key, pixel_weight)` with image (3, resolution, resolution) in [-1, 1] and pixel_weight (1, resolution,
    resolution) or None, raising BadSample for unusable items."""

    shuffle = True  # whether the loader visits items in a seeded random order (False: index order)

    def __init__(self, target: Target, location: str, rank: int = 0, world_size: int = 1):
        self.target = target
        self.location = location
        self.rank = rank
        self.world_size = world_size
        self._bad: dict[int, tuple[str, str, str]] = {}  # per-process memo of known-bad indices

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int, rng: random.Random) -> tuple[torch.Tensor, str, str, torch.Tensor | None]:
        raise NotImplementedError

    def _key(self, index: int) -> str:
        return str(index)

    def _item(self, index: int, rng: random.Random) -> dict:
        """The finished item (crops and low-res image) of a usable index; raises BadSample otherwise."""
        image, caption, name, pixel_weight = self._load(index, rng)
        item = self.target.finish(image, rng, pixel_weight)
        item.update(caption=caption, key=name)
        return item

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        index, seed, epoch = (key, 0, 0) if isinstance(key, int) else key
        length = len(self)
        if not 0 <= index < length:
            raise IndexError(f"index {index} out of range for a data set of {length}")
        skipped = []
        for attempt in range(min(length, MAX_CONSECUTIVE_BAD)):
            current = (index + attempt) % length
            if current in self._bad:
                skipped.append(self._bad[current])
                continue
            rng = item_rng(seed, epoch, index)
            try:
                item = self._item(current, rng)
            except BadSample as error:
                self._bad[current] = (self._key(current), error.reason, error.detail)
                skipped.append(self._bad[current])
                continue
            item["skipped"] = skipped
            return item
        if length <= MAX_CONSECUTIVE_BAD:
            raise ValueError(f"no usable image in {self.location}: all {length} items were skipped "
                             f"(first: {skipped[0][0]}: {skipped[0][1]})")
        raise ValueError(f"{MAX_CONSECUTIVE_BAD} consecutive unusable items in {self.location} from "
                         f"{skipped[0][0]} ({skipped[0][1]}); the data set looks mostly bad")


class ShapesDataset(MapDataset):
    """Item i is `training_scene(shapes_seed, i, two_object_prob, position_jitter)`, rendered (antialiased) at
    the stage's resolution; the low-res image is made by `downsample`, as for real data. Visited in index order: the
    scenes are random already, so the position in the stream is the index."""

    shuffle = False

    def __init__(self, config: DataConfig, target: Target, rank: int = 0, world_size: int = 1):
        super().__init__(target, "shapes", rank, world_size)
        self.seed = config.shapes_seed
        self.two_object_prob = config.two_object_prob
        self.jitter = config.position_jitter

    def __len__(self) -> int:
        return SHAPES_LENGTH

    def _key(self, index: int) -> str:
        return f"shapes:{self.seed}:{index}"

    def _scene(self, index: int) -> Scene:
        return training_scene(self.seed, index, self.two_object_prob, self.jitter)

    def _load(self, index, rng):
        scene = self._scene(index)
        return to_tensor(render(scene, self.target.resolution)), scene.caption, self._key(index), None

    def _item(self, index, rng):
        """Render only what the stage trains on: the crop at full resolution and the same region rendered at
        the low resolution (what the previous stage learns to draw), instead of a whole 1024 px image."""
        target = self.target
        if not target.lowres_resolution:
            return super()._item(index, rng)
        scene = self._scene(index)
        factor, size = target.factor, target.size
        if target.crop_candidates > 1:  # choosing among crops needs the whole low-res image
            whole = to_tensor(render(scene, target.lowres_resolution))
            top, left = target.crop_offsets(rng, whole)
            lowres = target.window(whole, top, left)
        else:
            top, left = target.crop_offsets(rng)
            lowres = to_tensor(render(scene, target.lowres_resolution,
                                      window=(left // factor, top // factor, size // factor)))
        image = render(scene, target.resolution, window=(left, top, size))
        return {"image": to_tensor(image), "lowres": lowres.contiguous(), "caption": scene.caption,
                "key": self._key(index)}


class FileDataset(MapDataset):
    """Image files with captions (from a folder scan or a manifest), and their loss masks, decoded and checked
    lazily; `unmasked_weight`: the loss weight of the pixels a mask leaves black."""

    def __init__(self, entries: list[Entry], report: ScanReport, target: Target, rank: int = 0,
                 world_size: int = 1, unmasked_weight: float = DataConfig.unmasked_weight):
        super().__init__(target, report.location, rank, world_size)
        self.entries = entries
        self.report = report
        self.unmasked_weight = unmasked_weight

    def __len__(self) -> int:
        return len(self.entries)

    def _key(self, index: int) -> str:
        return self.entries[index].key

    def _load(self, index, rng):
        entry = self.entries[index]
        target = self.target
        image = open_image(entry.image, min_size=min_side(target.resolution))
        box = square_box(*image.size, target.resize, rng)
        pixel_weight = None
        if entry.mask is not None:
            mask = to_tensor(resize_box(open_mask(entry.mask, image.size), target.resolution, box))[:1]
            pixel_weight = self.unmasked_weight + (1 - self.unmasked_weight) * (mask + 1) / 2
        return to_tensor(resize_box(image, target.resolution, box)), entry.caption, entry.key, pixel_weight


class MixedDataset(MapDataset):
    """Prior preservation: `data` with a `share` of prior examples mixed in. Indices below len(data) are the
    data's; the rest, len(data) * share / (1 - share) of them, are `prior` items, so a shuffled epoch draws that
    share of prior examples."""

    def __init__(self, data: MapDataset, prior: MapDataset, share: float):
        super().__init__(data.target, f"{data.location} + {share:.0%} {prior.location}", data.rank, data.world_size)
        self.data, self.prior = data, prior
        self.extra = min(len(prior), round(len(data) * share / (1.0 - share)))

    def __len__(self) -> int:
        return len(self.data) + self.extra

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict:
        index, seed, epoch = (key, 0, 0) if isinstance(key, int) else key
        if index < len(self.data):
            return self.data[(index, seed, epoch)]
        return self.prior[(index - len(self.data), seed, epoch)]
