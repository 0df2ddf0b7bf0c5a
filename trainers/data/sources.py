"""Turning a data source spec (`DataConfig.source`) into a list of (image, caption) entries or shards.

Accepted specs:
- `shapes`: the procedural shapes world (imagen.shapes);
- a folder: images (.jpg .jpeg .png .webp, any case, recursive, hidden names skipped) each with a
  same-name .txt caption next to it, and optionally a loss mask `NAME-masklabel.png` (OneTrainer's naming;
  white = the subject, whose pixels then count more in the loss: `DataConfig.unmasked_weight`); a folder with
  no images but .tar files is read as webdataset shards;
- `*.jsonl`: one `{"image": path, "caption": text}` object per line; `*.csv`: columns `image` and `caption`
  (manifest paths are relative to the manifest's folder unless absolute); an optional `mask` field or column
  names a loss mask;
- webdataset shards: a `.tar`/`.tar.gz`/`.tgz` file, or a brace pattern `path/shard-{000..009}.tar`
  (remote `scheme://` and `pipe:` URLs are passed to webdataset unchecked).
Captions are read here, at build time (cheap, and it lets a bad data set fail before training starts);
images are only checked when loaded.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .images import IMAGE_EXTENSIONS, BadSample, decode_caption, read_caption

logger = logging.getLogger("trainers.data")

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
MASK_SUFFIX = "-masklabel.png"
ACCEPTED = ("expected 'shapes', a folder of images with same-name .txt captions, a .jsonl or .csv manifest, "
            "or webdataset shards ('dir/shard-{000..009}.tar' or a .tar file)")
MAX_BAD_FRACTION = 0.5  # more bad entries than this (or none good) and the data set is refused
WARN_LINES = 10  # individual warning lines at build time; the rest go into the summary


@dataclass(frozen=True)
class Entry:
    """One training example of a file-based source: the image path, its caption, a stable key and the path of
    its loss mask (None: every pixel alike)."""

    image: str
    caption: str
    key: str
    mask: str | None = None


@dataclass(frozen=True)
class Source:
    """A resolved spec: kind is shapes, folder, jsonl, csv or webdataset."""

    kind: str
    location: str
    shards: tuple[str, ...] = ()


@dataclass
class ScanReport:
    """What a build-time scan found: good entries and skipped ones by reason."""

    location: str
    good: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, key: str, error: BadSample) -> None:
        if sum(self.skipped.values()) < WARN_LINES:
            logger.warning("data: skipping %s: %s", key, error)
        self.skipped[error.reason] += 1

    def summary(self) -> str:
        bad = sum(self.skipped.values())
        reasons = ", ".join(f"{reason} {count}" for reason, count in self.skipped.most_common())
        return f"{self.location}: {self.good} usable, {bad} skipped" + (f" ({reasons})" if bad else "")

    def check(self) -> None:
        """Log the summary; raise ValueError if nothing is usable or most entries are bad."""
        bad = sum(self.skipped.values())
        if bad:
            logger.warning("data: %s", self.summary())
        if self.good == 0:
            raise ValueError(f"no usable training examples in {self.location}: {self.summary()}")
        if bad > MAX_BAD_FRACTION * (bad + self.good):
            reason = self.skipped.most_common(1)[0][0]
            raise ValueError(f"data set {self.location} is mostly bad ({bad} of {bad + self.good} entries "
                             f"skipped, mostly '{reason}'): {self.summary()}")


def _is_remote(spec: str) -> bool:
    return "://" in spec or spec.startswith("pipe:")


def _shards(spec: str) -> tuple[str, ...]:
    import braceexpand

    shards = tuple(braceexpand.braceexpand(spec))
    if not all(s.endswith(SHARD_SUFFIXES) for s in shards):
        raise ValueError(f"webdataset shards must end in .tar, .tar.gz or .tgz, got {spec!r}; {ACCEPTED}")
    missing = [s for s in shards if not _is_remote(s) and not os.path.isfile(s)]
    if missing:
        raise ValueError(f"{len(missing)} of {len(shards)} webdataset shards do not exist, first: {missing[0]} "
                         f"(from {spec!r})")
    return shards


def _walk_images(root: Path) -> list[Path]:
    images = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        images.extend(Path(directory, f) for f in sorted(files)
                      if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
                      and not f.lower().endswith(MASK_SUFFIX))
    return sorted(images, key=lambda p: p.relative_to(root).as_posix())


def resolve_source(spec: str) -> Source:
    """The source a `DataConfig.source` string names. Raises ValueError (one line, naming the path and
    what is accepted) for a path that does not exist or a spec of no known kind."""
    spec = str(spec).strip()
    if spec == "shapes":
        return Source("shapes", "shapes")
    if "{" in spec or spec.endswith(SHARD_SUFFIXES) or _is_remote(spec):
        if not ("{" in spec or _is_remote(spec) or os.path.isfile(spec)):
            raise ValueError(f"data source {spec!r} does not exist; {ACCEPTED}")
        return Source("webdataset", spec, _shards(spec))
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(f"data source {spec!r} does not exist; {ACCEPTED}")
    if path.is_dir():
        if _walk_images(path):
            return Source("folder", str(path))
        tars = sorted(str(p) for p in path.iterdir() if p.name.endswith(SHARD_SUFFIXES))
        if tars:
            return Source("webdataset", str(path), tuple(tars))
        raise ValueError(f"data source folder {spec!r} holds no images ({' '.join(IMAGE_EXTENSIONS)}) "
                         f"and no .tar shards; {ACCEPTED}")
    if path.suffix.lower() in (".jsonl", ".csv"):
        return Source(path.suffix.lower()[1:], str(path))
    raise ValueError(f"unknown data source {spec!r}; {ACCEPTED}")


def scan_folder(root: str) -> tuple[list[Entry], ScanReport]:
    """Every image under `root` with a usable same-name .txt caption (sorted by relative path)."""
    report = ScanReport(root)
    entries = []
    for image in _walk_images(Path(root)):
        key = image.relative_to(root).as_posix()
        try:
            caption = read_caption(image.with_suffix(".txt"))
        except BadSample as error:
            report.skip(key, error)
            continue
        mask = image.with_name(image.stem + MASK_SUFFIX)
        entries.append(Entry(str(image), caption, key, str(mask) if mask.is_file() else None))
        report.good += 1
    return entries, report


def _manifest_rows(path: Path, kind: str):
    """(line label, row dict or None) for each row; the file is read as UTF-8, bad bytes kept as surrogates
    so that only the rows they are in are rejected."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as file:
        if kind == "csv":
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            if "image" not in columns or "caption" not in columns:
                raise ValueError(f"CSV manifest {path} needs columns 'image' and 'caption', found {columns}")
            for row in reader:
                yield f"line {reader.line_num}", row
            return
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            yield f"line {number}", row if isinstance(row, dict) else None


def read_manifest(manifest: str, kind: str) -> tuple[list[Entry], ScanReport]:
    """The entries of a .jsonl or .csv manifest; image paths relative to the manifest's folder."""
    path = Path(manifest)
    report = ScanReport(manifest)
    entries = []
    for label, row in _manifest_rows(path, kind):
        key = f"{path.name}:{label}"
        try:
            if row is None or not isinstance(row.get("image"), str) or not row["image"].strip():
                raise BadSample("bad manifest row", "expected an object with string fields 'image' and 'caption'")
            if row.get("caption") is not None and not isinstance(row["caption"], str):
                raise BadSample("bad manifest row", f"caption is a {type(row['caption']).__name__}, not text")
            caption = decode_caption(row.get("caption"))
            mask = row.get("mask") or ""
            if not isinstance(mask, str):
                raise BadSample("bad manifest row", f"mask is a {type(mask).__name__}, not a path")
        except BadSample as error:
            report.skip(key, error)
            continue
        entries.append(Entry(str(path.parent / row["image"].strip()), caption, key,
                             str(path.parent / mask.strip()) if mask.strip() else None))
        report.good += 1
    return entries, report
