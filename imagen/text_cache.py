"""On-disk cache of caption embeddings, so training reads T5 features instead of running T5 every step.

Layout, one subdirectory per encoder (its identity sha256, max length, dtype and the storage dtype, hashed):

    DIRECTORY/<key>/index.json                 format, identity, embed_dim, storage dtype, list of shards
    DIRECTORY/<key>/shard-00000.safetensors    "embeds" (sum of L_i, D) and "offsets" (N + 1,) int64: caption
                                               i is embeds[offsets[i]:offsets[i + 1]], unpadded (L_i, D);
                                               the N captions are in the file's metadata ("captions", JSON)

A changed encoder (other weights, tokenizer, max length or dtype) has another key, so it never reads stale
embeddings; old subdirectories are left for the user to delete. Shards are immutable and written atomically
(temp file in the same directory, fsync, rename), and the index is rewritten (atomically) only after its new
shard is on disk: an interrupted build leaves a valid cache holding every finished shard, and re-running the
build encodes only what is still missing. One writer at a time (an advisory lock where the OS has `fcntl`);
readers need no lock.

Misses: `get` raises KeyError naming the caption (build first); `encode` is the same lookup but encodes
misses on the fly, and with `add=True` keeps them, written as shards of `shard_size` or on `flush()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from .io import atomic_write
from .text import TextEncoder, parse_dtype

FORMAT = 1
INDEX = "index.json"


class TextEmbeddingCache:
    """Caption -> `(L, D)` embedding of `encoder`, stored under `directory`. No I/O until first used.

    `storage_dtype` (default: the encoder's dtype, lossless) may be "float16" to halve the disk; lookups
    always return the encoder's dtype."""

    def __init__(self, directory: str | Path, encoder: TextEncoder, *,
                 storage_dtype: str | torch.dtype | None = None, shard_size: int = 4096):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.encoder = encoder
        identity = dict(encoder.identity)
        self.dtype = parse_dtype(identity.get("dtype", "float32"))
        self.storage_dtype = self.dtype if storage_dtype is None else parse_dtype(storage_dtype)
        self.shard_size = shard_size
        self.key = cache_key(identity, self.storage_dtype)
        self.path = Path(directory) / self.key
        self._identity = identity
        self._entries: dict[str, tuple[int, int, int]] | None = None  # caption -> (shard, start, stop)
        self._shards: list[dict[str, Any]] = []
        self._handles: dict[int, Any] = {}
        self._pending: dict[str, torch.Tensor] = {}  # encoded on the fly, not yet written

    # -- lookups ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index()) + len(self._pending)

    def __contains__(self, caption: str) -> bool:
        return self.contains(caption)

    def contains(self, caption: str) -> bool:
        return caption in self._pending or caption in self._index()

    def missing(self, captions: Iterable[str]) -> list[str]:
        """The captions (each once, first-seen order) that are not cached."""
        return [c for c in dict.fromkeys(captions) if not self.contains(c)]

    def get(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(embeds (B, L, D) in the encoder's dtype, mask (B, L) bool)` on the CPU, padded (with zeros)
        to the longest caption. Raises KeyError if a caption is not cached."""
        absent = self.missing(captions)
        if absent:
            self._entries = None  # another process may have added them since
            absent = self.missing(absent)
        if absent:
            raise KeyError(f"{len(absent)} caption(s) not in the text cache {self.path}, e.g. {absent[0]!r}: "
                           "run cache.build(captions) first, or use cache.encode(...) to encode misses")
        return _pad([self._read(c) for c in captions], self.encoder.embed_dim, self.dtype)

    def encode(self, captions: list[str], add: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Like `get`, but misses are encoded now (one batch); `add=True` also keeps them in the cache."""
        absent = self.missing(captions)
        fresh = dict(zip(absent, self._encode(absent), strict=True)) if absent else {}
        if add and fresh:
            self._pending.update(fresh)
            if len(self._pending) >= self.shard_size:
                self.flush()
        rows = [fresh[c].to(self.dtype) if c in fresh else self._read(c) for c in captions]
        return _pad(rows, self.encoder.embed_dim, self.dtype)

    # -- writing ---------------------------------------------------------------------------------------
    def build(self, captions: Iterable[str], batch_size: int = 64, progress: bool = False) -> int:
        """Encode every caption not yet cached, in batches of similar length, writing a shard each
        `shard_size` captions. Returns how many were encoded (0 when the cache was complete)."""
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        captions = list(captions)
        if not self.missing(captions):
            return 0
        with self._lock():
            self._entries = None
            todo = sorted(self.missing(captions), key=lambda c: (len(c), c))  # similar lengths: little padding
            done: list[tuple[str, torch.Tensor]] = []
            with tqdm(total=len(todo), unit="caption", desc="text cache", disable=not progress) as bar:
                for start in range(0, len(todo), batch_size):
                    batch = todo[start:start + batch_size]
                    done.extend(zip(batch, self._encode(batch), strict=True))
                    bar.update(len(batch))
                    if len(done) >= self.shard_size:
                        self._write_shard(done[:self.shard_size])
                        done = done[self.shard_size:]
                if done:
                    self._write_shard(done)
        return len(todo)

    def flush(self) -> None:
        """Write the captions kept by `encode(..., add=True)` as one shard."""
        if not self._pending:
            return
        with self._lock():
            self._entries = None
            rows = [(c, e) for c, e in self._pending.items() if c not in self._index()]
            if rows:
                self._write_shard(rows)
        self._pending.clear()

    # -- internals -------------------------------------------------------------------------------------
    def _encode(self, captions: list[str]) -> list[torch.Tensor]:
        embeds, mask = self.encoder.encode(captions)
        embeds, mask = embeds.cpu(), mask.cpu()
        return [embeds[i, mask[i]].to(self.storage_dtype) for i in range(len(captions))]

    def _index(self) -> dict[str, tuple[int, int, int]]:
        if self._entries is None:
            self._load_index()
        return self._entries

    def _load_index(self) -> None:
        from safetensors import safe_open

        index_file = self.path / INDEX
        entries: dict[str, tuple[int, int, int]] = {}
        shards: list[dict[str, Any]] = []
        if index_file.is_file():
            index = json.loads(index_file.read_text(encoding="utf-8"))
            if index.get("format") != FORMAT or index.get("key") != self.key:
                raise ValueError(f"text cache {self.path} was written by another format or encoder "
                                 f"(format {index.get('format')}, key {index.get('key')}); delete that directory")
            shards = index["shards"]
            for number, shard in enumerate(shards):
                file = self.path / shard["file"]
                if not file.is_file() or file.stat().st_size != shard["bytes"]:
                    raise ValueError(f"text cache shard {file} is missing or damaged; delete {self.path} "
                                     "and build the cache again")
                with safe_open(str(file), framework="pt") as handle:
                    captions = json.loads(handle.metadata()["captions"])
                    offsets = handle.get_tensor("offsets").tolist()
                for i, caption in enumerate(captions):
                    entries[caption] = (number, offsets[i], offsets[i + 1])
        self._entries, self._shards = entries, shards

    def _read(self, caption: str) -> torch.Tensor:
        if caption in self._pending:
            return self._pending[caption].to(self.dtype)
        from safetensors import safe_open

        number, start, stop = self._index()[caption]
        if number not in self._handles:  # shards never change once indexed: keep them open (memory-mapped)
            self._handles[number] = safe_open(str(self.path / self._shards[number]["file"]), framework="pt")
        return self._handles[number].get_slice("embeds")[start:stop].to(self.dtype)

    def _write_shard(self, rows: list[tuple[str, torch.Tensor]]) -> None:
        """Shard first, index second, both atomic: a crash in between leaves an unindexed (ignored) shard."""
        from safetensors.torch import save

        entries = self._index()
        taken = [int(p.stem.split("-")[1]) for p in self.path.glob("shard-*.safetensors")]
        name = f"shard-{max(taken, default=-1) + 1:05d}.safetensors"
        offsets = torch.cumsum(torch.tensor([0] + [e.shape[0] for _, e in rows]), 0)
        data = save({"embeds": torch.cat([e for _, e in rows]).contiguous(), "offsets": offsets},
                    metadata={"captions": json.dumps([c for c, _ in rows], ensure_ascii=False)})
        atomic_write(self.path / name, data)
        shards = [*self._shards, {"file": name, "count": len(rows), "bytes": len(data)}]
        index = {"format": FORMAT, "key": self.key, "identity": self._identity, "embed_dim": self.encoder.embed_dim,
                 "storage_dtype": str(self.storage_dtype).removeprefix("torch."), "shards": shards}
        atomic_write(self.path / INDEX, (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode())
        self._shards = shards
        for i, (caption, _) in enumerate(rows):
            entries[caption] = (len(shards) - 1, int(offsets[i]), int(offsets[i + 1]))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+b") as handle:
            try:
                import fcntl
            except ImportError:  # no advisory locks on this OS: one writer at a time is up to the user
                fcntl = None
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            for stale in self.path.glob(".*.tmp"):  # left by an interrupted writer; we hold the lock
                stale.unlink(missing_ok=True)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)


def cache_key(identity: dict[str, Any], storage_dtype: torch.dtype) -> str:
    """16 hex digits naming what the cached embeddings depend on: the encoder's files (sha256), max length,
    dtype and embed dim (not its name or path), the storage dtype and the cache format."""
    fields = {k: v for k, v in identity.items() if k not in ("name", "path")}
    fields.update(format=FORMAT, storage_dtype=str(storage_dtype).removeprefix("torch."))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _pad(rows: list[torch.Tensor], dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    length = max((r.shape[0] for r in rows), default=0)
    embeds = torch.zeros(len(rows), length, dim, dtype=dtype)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, row in enumerate(rows):
        embeds[i, :row.shape[0]] = row
        mask[i, :row.shape[0]] = True
    return embeds, mask
