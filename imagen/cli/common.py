"""What the command-line tools share: one-line usage errors, the parser that reports them, `--version`, the
`main` wrapper that turns a user error into one line and exit status 2, PNG writing with text chunks, and the
labelled grid."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ..io import keep_freed_memory

MIN_GRID_CELL, MAX_GRID_CELL = 128, 512


class UsageError(ValueError):
    """A user error: exit 2 with its one-line message."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump), with `--version`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imagen-cascade")
    except PackageNotFoundError:
        return "unknown (not installed)"


def run_main(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
             argv: list[str] | None = None, errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> int:
    """Parse `argv` and run `body(args)`; `errors` (user errors, bad files) become one line on stderr and exit
    status 2. Returns the exit status."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help / --version (0) or a usage error (2, already printed)
        return int(e.code or 0)
    keep_freed_memory()
    try:
        return body(args)
    except errors as e:
        print(f"{parser.prog}: error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(error: BaseException) -> str:
    """The error's message on one line; an OS error names its file."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return " ".join(str(error).split()) or type(error).__name__


def png_bytes(image) -> bytes:
    """A PIL image as PNG, with the text chunks `prompt` and `settings` when its `.info` has them (as the
    pipeline's images do)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key in ("prompt", "settings"):
        if key in image.info:
            value = image.info[key]
            info.add_text(key, value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(path: Path, image) -> None:
    from ..io import atomic_write

    atomic_write(path, png_bytes(image))


def titled_grid(images, *, labels=None, columns=None, row_titles=None, column_titles=None, title=None):
    """`images` as a labelled grid (cells 128-512 px), with `title` written above it."""
    from PIL import Image, ImageDraw, ImageFont

    from ..grid import labelled_grid

    cell = max(MIN_GRID_CELL, min(MAX_GRID_CELL, images[0].width))
    grid = labelled_grid(images, labels=labels, columns=columns, cell=cell, row_titles=row_titles,
                         column_titles=column_titles)
    if not title:
        return grid
    font = ImageFont.load_default()
    chars = max(20, grid.width // 6)
    lines = [title[i:i + chars] for i in range(0, len(title), chars)]
    band = 6 + 12 * len(lines)
    out = Image.new("RGB", (grid.width, grid.height + band), "white")
    out.paste(grid, (0, band))
    draw = ImageDraw.Draw(out)
    for k, line in enumerate(lines):
        draw.text((4, 3 + 12 * k), line, fill="black", font=font)
    return out
