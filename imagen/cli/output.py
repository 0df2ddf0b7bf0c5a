"""Where `imagen-sample` writes: a directory, or one .png path. Checked before the model loads (a trial write
included), and never overwritten silently: in a directory, images are numbered after the highest number already
there or in its stage folders and named files (grid.png, ...) get the next free suffix; an existing .png (or the
.gif beside it that the run would write) is refused. `--overwrite` numbers from 000 and replaces files."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from .common import UsageError, write_png

_NUMBERED = re.compile(r"^(\d+)\.png$")
OTHER_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}  # not a directory's name


class Output:
    def __init__(self, out: Path, overwrite: bool = False, suffixes: tuple[str, ...] = (".png",)):
        self.out, self.overwrite = out, overwrite
        self.suffixes = suffixes  # of the files written for a single .png: X.png, X.gif
        self.single_png = out.suffix.lower() == ".png"
        self.directory = out.parent if self.single_png else out
        self.first_index = 0
        self.written: list[Path] = []

    def check(self) -> None:
        """Make sure the run can write its files, before the model loads; UsageError naming the problem. Nothing
        is left behind (the trial write removes what it made)."""
        flag = f"--out {str(self.out)!r}"
        if self.out.suffix.lower() in OTHER_IMAGE_SUFFIXES and not self.out.is_dir():
            raise UsageError(f"{flag}: images are written as PNG (with their prompt and settings); give a .png path "
                             "or a directory")
        if self.single_png:
            if self.out.is_dir():
                raise UsageError(f"{flag} is a directory: give a new .png path, or the directory without .png")
            for path in map(self._beside, self.suffixes):
                taken = flag if path == self.out else f"{flag}: {str(path)!r}"
                if path.exists() and not self.overwrite:
                    raise UsageError(f"{taken} already exists: add --overwrite to replace it, or choose another name")
        elif self.out.exists() and not self.out.is_dir():
            raise UsageError(f"{flag} is a file: give a directory (or a .png path for a single image)")
        existing = self.directory.absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"cannot create the output directory {str(self.directory)!r}: {str(existing)!r} is a "
                             "file")
        if self.directory.is_dir() and not self.single_png and not self.overwrite:
            files = [*self.directory.glob("*.png"), *self.directory.glob("*/*.png")]
            numbers = [int(m.group(1)) for p in files if (m := _NUMBERED.match(p.name))]
            self.first_index = max(numbers) + 1 if numbers else 0
        self._trial_write(self.out if self.single_png else self.numbered(0, 1), flag)

    def _trial_write(self, path: Path, flag: str) -> None:
        """Create the missing directories as the run will and a file beside `path`, then remove them; UsageError if
        that fails (permission bits pass on read-only mounts, /proc, and for root)."""
        from ..io import check_writable

        folder = path.parent.absolute()
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        made: list[Path] = []
        try:
            for directory in reversed(missing):
                directory.mkdir()
                made.append(directory)
            check_writable(path)
        except OSError as e:
            raise UsageError(f"{flag} cannot be written ({e.strerror or e} in {str(folder)!r}): choose another "
                             "--out") from None
        finally:
            for directory in reversed(made):
                with contextlib.suppress(OSError):
                    directory.rmdir()

    def numbered(self, index: int, count: int, stage: str | None = None) -> Path:
        """The path of image `index` of `count` (in a stage's subdirectory for an earlier stage)."""
        number = self.first_index + index
        width = max(3, len(str(self.first_index + count - 1)))
        folder = self.directory / stage if stage else self.directory
        return folder / f"{number:0{width}d}.png"

    def named(self, name: str) -> Path:
        """`name` in the directory (grid.png, sweep.png, ...), or --out itself for a single .png; a name already
        taken gets the next free suffix (grid-2.png) unless --overwrite."""
        if self.single_png:
            return self._beside(Path(name).suffix)
        path = self.directory / name
        stem, suffix, k = path.stem, path.suffix, 2
        while path.exists() and not self.overwrite:
            path, k = self.directory / f"{stem}-{k}{suffix}", k + 1
        return path

    def _beside(self, suffix: str) -> Path:
        """The file of a single .png --out with this suffix: --out itself for .png, X.gif beside X.png."""
        assert suffix in self.suffixes, f"{suffix}: a file Output.check did not check"
        return self.out if suffix == ".png" else self.out.with_suffix(suffix)

    def save(self, path: Path, image) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image)
        self.written.append(path)

    def write(self, path: Path, data: bytes) -> None:
        from ..io import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        self.written.append(path)

    def summary(self, prog: str) -> str:
        """The last line of a run: what was written, where."""
        if self.single_png and len(self.written) == 1:
            return f"{prog}: wrote {self.written[0]}"
        finals = [p for p in self.written if p.parent == self.directory and _NUMBERED.match(p.name)]
        earlier = [p for p in self.written if p.parent != self.directory]
        named = [p.name for p in self.written if p.parent == self.directory and not _NUMBERED.match(p.name)]
        parts = [f"{len(finals)} image(s)"] * bool(finals) + [f"{len(earlier)} of earlier stages"] * bool(earlier)
        return f"{prog}: wrote {', '.join(parts + named) or 'nothing'} to {self.directory}/"
