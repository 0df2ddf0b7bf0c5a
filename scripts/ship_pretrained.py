"""Copy a trained cascade into the package as a shipped model, loadable by name without network:
`Imagen.from_pretrained(NAME)` and `imagen-sample --model NAME`.

    python scripts/ship_pretrained.py RUN_DIR [--name shapes] [--quality quality.json]

Writes imagen/assets/pretrained/NAME/: config.json and one fp16 safetensors file per stage (EMA weights), the
run's resolved config (run-config.json, to retrain it with `imagen-train --config .../run-config.json`) and,
if given, the bench/quality.py JSON measured on it (quality.json).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagen import Imagen  # noqa: E402
from imagen.checkpoint import PRETRAINED_DIR  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="an imagen-train run directory (its exported model)")
    parser.add_argument("--name", default="shapes")
    parser.add_argument("--quality", type=Path, help="bench/quality.py JSON output to keep beside the weights")
    args = parser.parse_args(argv)
    target = PRETRAINED_DIR / args.name
    pipe = Imagen.from_pretrained(args.run_dir)
    pipe.save_pretrained(target, dtype=torch.float16)
    shutil.copyfile(args.run_dir / "run-config.json", target / "run-config.json")
    if args.quality:
        shutil.copyfile(args.quality, target / "quality.json")
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    print(f"shipped {args.run_dir} as {args.name!r} in {target} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
