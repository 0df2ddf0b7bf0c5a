"""File and host-memory I/O shared across the package: atomic writes, digests of written files, finding a model
directory without the network, and the process's memory (available, kept for reuse)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import stat
from pathlib import Path

MAX_TEXT_BYTES = 64 * 1024  # of a caption or prompt file line read from disk: far more than any tokenizer uses


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part:
    a temp file in the same directory, fsynced, then renamed over `path`."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def check_writable(path: str | Path) -> None:
    """OSError unless `atomic_write(path, ...)` can create its temp file beside `path`: a real trial write, since
    permission bits alone pass on read-only mounts, /proc, and for root."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file name")
    trial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(trial, "wb"):
        pass
    trial.unlink()


def check_regular_file(path: str | Path) -> None:
    """OSError unless `path` is a regular file (following symlinks): FIFOs, devices, sockets and directories are
    never opened (a FIFO would block the reader forever); a symlink loop fails here too."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise OSError(f"{path} is {kind}, not a regular file")


def read_bounded(path: str | Path, limit: int = MAX_TEXT_BYTES) -> bytes:
    """The first `limit` bytes of the regular file `path` (see `check_regular_file`)."""
    check_regular_file(path)
    with open(path, "rb") as handle:
        return handle.read(limit)


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Keep the memory this process frees for its next allocations (glibc).

    By default glibc hands large freed blocks (over a threshold between 128 KiB and 32 MB) straight back to the
    system, so the next tensor of that size pays a page fault per 4 KiB and the kernel's zeroing; at 1024 px one
    activation of a 16-channel stage is 64 MB, and on 2 cores that is over a third of the stage's forward
    (`bench/mfu.py --glibc-malloc` measures without this). After this call, blocks come from the heap and freed
    ones are reused; the process keeps its peak memory. The sampling, evaluation and training commands call it
    first; a library user may too. Returns False where the C library has no `mallopt` (not glibc)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1


def sha256(data: bytes) -> str:
    """The hex SHA-256 of `data`: the digest recorded for every weight and checkpoint file."""
    return hashlib.sha256(data).hexdigest()


def verify(path: str | Path, data: bytes, expected: str | None) -> None:
    """ValueError naming `path` when `data` (its bytes) does not have the recorded digest (`None`: nothing
    recorded, as in files written before digests were)."""
    if expected is not None and sha256(data) != expected:
        raise ValueError(f"{path}: its contents do not match the SHA-256 recorded when it was written; the file is "
                         "corrupted (restore it, or write it again)")


def fsync_dir(path: str | Path) -> None:
    """Make renames inside `path` durable (POSIX; silently skipped where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        directory = os.open(path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def find_in_hub_cache(name: str, filename: str) -> Path | None:
    """The directory of `filename` for hub repo `name` in the local Hugging Face cache, or None. Never
    touches the network; None also for names that are not valid hub ids."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    cached = try_to_load_from_cache(name, filename)
    return Path(cached).parent if isinstance(cached, str) else None
