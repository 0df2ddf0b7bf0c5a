"""`build_dataset`: from a `DataConfig` and a stage's sizes to the data set its trainer reads."""

from __future__ import annotations

from dataclasses import replace

from configs.schema import DataConfig

from .datasets import FileDataset, MapDataset, MixedDataset, ShapesDataset, Target
from .sources import read_manifest, resolve_source, scan_folder
from .stream import WebDatasetStream


def build_dataset(config: DataConfig, resolution: int, *, crop_size: int = 0, lowres_resolution: int = 0,
                  crop_candidates: int = 1, rank: int = 0, world_size: int = 1) -> MapDataset | WebDatasetStream:
    """The data set of `config.source` for a stage at `resolution`.

    Items: `{"image": (3, R, R), "caption": str, "key": str}` with R = crop_size or resolution, values in
    [-1, 1], plus `"lowres": (3, r, r)` when lowres_resolution > 0 (r = lowres_resolution, or
    crop_size * lowres_resolution / resolution for crops: the same region of the whole image downsampled
    by `imagen.resize.downsample`), and `"pixel_weight": (1, R, R)` for an image with a loss mask. Folder and
    manifest captions are read now (bad data sets fail here); images are checked when loaded.
    `rank`/`world_size` split webdataset shards (and are the defaults of `make_loader`). With `prior_share`, a
    MixedDataset of the source and `prior_source`. Raises ValueError for an unknown or missing source and for
    inconsistent sizes.
    """
    if config.prior_share > 0:
        sizes = {"crop_size": crop_size, "lowres_resolution": lowres_resolution, "crop_candidates": crop_candidates,
                 "rank": rank, "world_size": world_size}
        data = build_dataset(replace(config, prior_source="", prior_share=0.0), resolution, **sizes)
        prior = build_dataset(replace(config, source=config.prior_source, prior_source="", prior_share=0.0),
                              resolution, **sizes)
        if not isinstance(data, MapDataset) or not isinstance(prior, MapDataset):
            raise ValueError("prior preservation mixes indexed data sets: not webdataset shards")
        return MixedDataset(data, prior, config.prior_share)
    target = Target(resolution, crop_size, lowres_resolution, config.resize, crop_candidates)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    source = resolve_source(config.source)
    if source.kind == "shapes":
        return ShapesDataset(config, target, rank, world_size)
    if source.kind == "webdataset":
        return WebDatasetStream(source.shards, source.location, target, rank, world_size)
    if source.kind == "folder":
        entries, report = scan_folder(source.location)
    else:
        entries, report = read_manifest(source.location, source.kind)
    report.check()
    return FileDataset(entries, report, target, rank, world_size, config.unmasked_weight)
