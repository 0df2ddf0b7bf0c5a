"""Training data: the shapes world, image folders, JSONL/CSV manifests and webdataset shards, with a
resumable, deterministic, rank-aware loader.

    dataset = build_dataset(config.data, resolution=256, crop_size=0, lowres_resolution=64, rank=r, world_size=w)
    loader = make_loader(dataset, batch_size=8, seed=0, num_workers=2, start_state=saved or None)
    for batch in loader:   # {"image": (B, 3, R, R), "lowres": (B, 3, r, r), "caption": [...], "key": [...]}
        ...
        checkpoint["data"] = loader.state_dict()
"""

from .build import build_dataset
from .datasets import FileDataset, MapDataset, ShapesDataset, Target
from .images import BadSample
from .loader import BadDataLog, ResumableLoader, make_loader
from .sources import resolve_source
from .stream import WebDatasetStream

__all__ = ["BadDataLog", "BadSample", "FileDataset", "MapDataset", "ResumableLoader", "ShapesDataset", "Target",
           "WebDatasetStream", "build_dataset", "make_loader", "resolve_source"]
