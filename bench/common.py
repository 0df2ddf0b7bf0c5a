"""What every benchmark shares: the machine record, medians of repeated timings, peak RSS, JSON output."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER_PYTHON = ROOT / ".anchors" / "imagen-pytorch" / "bin" / "python"  # imagen-pytorch 2.1.0's venv
DEFAULT_HARNESS = ROOT.parent / "shared" / "anchors" / "imagen_pytorch_bench.py"  # its offline set-up


def machine(threads: int | None = None) -> dict:
    """CPU model, cores, torch threads and versions, for the JSON record."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall-clock seconds of `fn()` over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def peak_rss_mb() -> float:
    """The process's peak resident set size (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux >= 4.0; silently a no-op where not permitted)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def atomic_save(path: str | Path, save: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `save(handle)` so that readers see the old file or the whole new one, never a part:
    a temp file in the same directory, fsynced, then renamed over `path` (stdlib only, for the peer's venv)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            save(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def emit(result: dict, out: str | Path | None = None) -> None:
    """Print the result as one JSON object on the last line of stdout (and, with `out`, write it there)."""
    if out:
        atomic_save(out, lambda handle: handle.write(json.dumps(result, indent=2).encode("utf-8")))
    print(json.dumps(result), flush=True)


def worker_env(threads: int) -> dict:
    """The environment of a benchmark worker: offline, `threads` OpenMP threads, warnings off."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
            "OMP_NUM_THREADS": str(threads)}


def spawn_json(cmd: Sequence[str], what: str, threads: int, log: Path | None = None, *,
               expect_json: bool = True) -> dict:
    """Run a worker process (in ROOT) and return the JSON object on the last `{`-line of its stdout ({} when
    not `expect_json`). With `log`, its stdout and stderr go to that file as they come (long runs); otherwise
    they are captured. Raises RuntimeError naming `what`, the exit status and the end of its output when it
    fails (or prints no JSON line when one is expected)."""
    cmd = [str(c) for c in cmd]
    if log is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(threads), cwd=str(ROOT))
        out, tail = proc.stdout, proc.stderr[-3000:] or proc.stdout[-3000:]
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"$ {' '.join(cmd)}\n")
            handle.flush()
            proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True, env=worker_env(threads),
                                  cwd=str(ROOT))
        out = log.read_text(encoding="utf-8", errors="replace")
        tail = f"(log: {log})\n" + out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or (expect_json and not lines):
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads(lines[-1]) if lines else {}


def check_peer(peer_python: str | Path, harness: str | Path) -> None:
    """Exit with one clear line when the peer's venv or the anchor harness is missing."""
    if not Path(peer_python).exists():
        raise SystemExit(f"error: peer python {peer_python} not found; build it with ../shared/anchors/setup.sh "
                         "or pass --peer-python")
    if not Path(harness).exists():
        raise SystemExit(f"error: anchor harness {harness} not found; pass --harness")


def peer_offline(harness: str | Path):
    """In the peer's venv: load the anchor harness (HF_HUB_OFFLINE, a throw-away HF cache, sockets refused)
    and run its `offline_setup`, so `imagen_pytorch` imports without the network. Returns the harness module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("anchor_harness", str(harness))
    anchor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(anchor)
    anchor.offline_setup([])
    return anchor
