"""Where the evaluation's images and captions come from: a directory of images, or a JSONL manifest.

Directory: every .png/.jpg/.jpeg/.webp file (optionally recursive); its caption is the PNG text chunk
`prompt` (what `imagen-sample` writes), else the text of a same-name `.txt` file beside it.
Manifest: one JSON object a line, `{"image": path, "caption": text}`; relative paths are relative to the
manifest's directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from imagen.io import check_regular_file, read_bounded

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class SourceError(ValueError):
    """A user error in the evaluation's input (missing path, malformed manifest, ...)."""


@dataclass(frozen=True)
class Item:
    """One image to judge: its path, caption (None when none was found) and name relative to the source."""

    path: Path
    caption: str | None
    name: str


def png_prompt(path: Path) -> str | None:
    """The PNG text chunk `prompt` of an image file, or None (not a PNG, no such chunk, unreadable)."""
    try:
        check_regular_file(path)
        with Image.open(path) as image:
            text = getattr(image, "text", None) or {}
            prompt = text.get("prompt")
    except (OSError, ValueError):
        return None
    return prompt.strip() if isinstance(prompt, str) and prompt.strip() else None


def caption_for(path: Path) -> str | None:
    """The caption of an image in a directory: its PNG `prompt` chunk, else its same-name .txt file."""
    prompt = png_prompt(path) if path.suffix.lower() == ".png" else None
    if prompt is not None:
        return prompt
    text_file = path.with_suffix(".txt")
    if text_file.is_file():
        text = read_bounded(text_file).decode("utf-8", errors="replace").strip()
        return text or None
    return None


def from_directory(directory: Path, recursive: bool = False) -> list[Item]:
    """The images of `directory` (sorted by name) with their captions."""
    if not directory.is_dir():
        raise SourceError(f"not a directory: {directory}")
    pattern = "**/*" if recursive else "*"
    paths = sorted(p for p in directory.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [Item(p, caption_for(p), p.relative_to(directory).as_posix()) for p in paths]


def from_manifest(manifest: Path) -> list[Item]:
    """The images and captions listed in a JSONL manifest (blank lines ignored)."""
    if not manifest.is_file():
        raise SourceError(f"no such manifest: {manifest} (or not a regular file)")
    items = []
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SourceError(f"{manifest}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SourceError(f"{manifest}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise SourceError(f'{manifest}:{number}: expected an object with "image" (a path) and "caption"')
        caption = record.get("caption")
        if caption is not None and not isinstance(caption, str):
            raise SourceError(f'{manifest}:{number}: "caption" must be a string')
        path = Path(record["image"])
        path = path if path.is_absolute() else manifest.parent / path
        items.append(Item(path, caption.strip() if caption else None, record["image"]))
    return items


def collect(source: str | Path, recursive: bool = False) -> list[Item]:
    """Items from a directory or a `.jsonl` manifest; raises SourceError when the source is unusable or
    holds no images."""
    path = Path(source)
    if not path.exists():
        raise SourceError(f"no such file or directory: {path}")
    if path.is_dir():
        items = from_directory(path, recursive)
        where = f"{path} (looked for {', '.join(IMAGE_SUFFIXES)}{', recursively' if recursive else ''})"
    elif path.suffix.lower() in (".jsonl", ".json"):
        items = from_manifest(path)
        where = str(path)
    else:
        raise SourceError(f"expected a directory of images or a .jsonl manifest, got {path}")
    if not items:
        raise SourceError(f"no images in {where}")
    return items
