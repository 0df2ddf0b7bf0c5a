"""Small real image files, captions, manifests and tar shards for the data tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def image_bytes(fmt: str = "PNG", size=(48, 40), seed: int = 0, mode: str = "RGB") -> bytes:
    """A noisy image (so crops and resizes are visible) encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(array, "RGB").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1x1 PNG whose header claims width x height pixels (a decompression bomb to PIL)."""
    data = bytearray(image_bytes("PNG", size=(1, 1)))
    start = 8 + 8  # signature, then the IHDR chunk's length and type
    data[start:start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[start - 4:start + 13]))
    data[start + 13:start + 17] = struct.pack(">I", crc)
    return bytes(data)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.fixture
def files():
    """The helpers above, for tests (conftest modules are not importable by name)."""
    return SimpleNamespace(image_bytes=image_bytes, bomb_png=bomb_png, write=write, FORMATS=FORMATS)


@pytest.fixture
def image_folder(tmp_path):
    """A folder of `count` good images (png/jpg/webp, nested, mixed-case extensions) with captions."""

    def make(count: int = 8, size=(48, 40), root: Path | None = None) -> Path:
        root = root or tmp_path / "images"
        exts = [".png", ".jpg", ".webp", ".PNG"]
        for i in range(count):
            ext = exts[i % len(exts)]
            sub = root / ("sub" if i % 3 == 0 else "") / f"img{i:03d}{ext}"
            write(sub, image_bytes(FORMATS[ext.lower()], size=size, seed=i))
            write(sub.with_suffix(".txt"), f"caption number {i}\n")
        return root

    return make
