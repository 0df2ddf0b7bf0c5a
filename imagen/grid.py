"""Labelled image grids (PIL only, default font): captions under each image, optional row/column titles."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def labelled_grid(images: Sequence[Image.Image], labels: Sequence[str] | None = None, columns: int | None = None,
                  cell: int | None = None, row_titles: Sequence[str] | None = None,
                  column_titles: Sequence[str] | None = None) -> Image.Image:
    """A grid of `images` (resized to `cell` px squares, default: their own size up to 256), row-major with
    `columns` per row, each with its label wrapped underneath; optional titles left of rows / above columns."""
    if not images:
        raise ValueError("no images to put in a grid")
    columns = columns or len(images)
    rows = (len(images) + columns - 1) // columns
    cell = cell or min(256, max(images[0].size))
    font = ImageFont.load_default()
    chars = max(8, cell // 6)
    wrapped = [textwrap.wrap(text, chars) for text in (labels or [""] * len(images))]
    label_h = 11 * max((len(w) for w in wrapped), default=0) + (4 if labels else 0)
    left = 8 + 6 * max((len(t) for t in row_titles), default=0) if row_titles else 0
    top = 16 if column_titles else 0
    pad = 4
    width = left + columns * (cell + pad) + pad
    height = top + rows * (cell + label_h + pad) + pad
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        x, y = left + pad + c * (cell + pad), top + pad + r * (cell + label_h + pad)
        grid.paste(image.convert("RGB").resize((cell, cell), Image.Resampling.LANCZOS), (x, y))
        for k, line in enumerate(wrapped[i]):
            draw.text((x, y + cell + 2 + 11 * k), line, fill="black", font=font)
    for r, title in enumerate(row_titles or []):
        draw.text((4, top + pad + r * (cell + label_h + pad) + cell // 2), title, fill="black", font=font)
    for c, title in enumerate(column_titles or []):
        draw.text((left + pad + c * (cell + pad), 3), title, fill="black", font=font)
    return grid
