"""What every benchmark shares: the machine record, medians of repeated timings, peak RSS, JSON output."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Callable


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


def emit(result: dict) -> None:
    """Print the result as one JSON object on the last line of stdout."""
    print(json.dumps(result), flush=True)
