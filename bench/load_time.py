#!/usr/bin/env python
"""What the integrity check costs: `Imagen.from_pretrained` of a model with its recorded SHA-256 digests checked
against the same load with the check skipped, medians over repeats, and the time to hash the weight files alone.

Usage:  python bench/load_time.py [--model shapes] [--repeats 5]
Prints one JSON line: {"load_with_digests_s", "load_without_s", "hash_weights_s", "model", "machine"}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import emit, machine, median_time  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes", help="a model name or directory (default shapes)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import imagen.checkpoint as checkpoint
    from imagen import Imagen
    from imagen.io import sha256

    load = lambda: Imagen.from_pretrained(args.model)  # noqa: E731
    with_digests, _ = median_time(load, args.repeats, warmup=1)
    verify = checkpoint.verify
    checkpoint.verify = lambda *_: None
    try:
        without, _ = median_time(load, args.repeats, warmup=1)
    finally:
        checkpoint.verify = verify
    directory = checkpoint.resolve_model(args.model)
    files = sorted(directory.glob("*.safetensors"))
    start = time.perf_counter()
    for path in files:
        sha256(path.read_bytes())
    emit({"load_with_digests_s": round(with_digests, 3), "load_without_s": round(without, 3),
          "hash_weights_s": round(time.perf_counter() - start, 4), "model": args.model, "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
