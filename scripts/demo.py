"""The offline demo behind `make demo`: train the shapes-tiny cascade (64 -> 256 -> 1024 px) on this machine,
then draw held-out prompts at every stage, write labelled grids and judge the base images' compliance.

    python scripts/demo.py [--output runs/shapes-tiny] [--prompts 8] [--minutes-scale 1.0]

Re-running continues an interrupted run (`--resume` is implied when the output holds one).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("runs/shapes-tiny"))
    parser.add_argument("--prompts", type=int, default=8, help="held-out prompts to draw (one-object; 2 more with two)")
    parser.add_argument("--eval-prompts", type=int, default=48, help="held-out prompts judged at 64 px")
    parser.add_argument("--minutes-scale", type=float, default=1.0, help="scale every stage's training budget")
    args = parser.parse_args(argv)

    from configs import load_config
    from trainers.cli import main as train

    started = time.perf_counter()
    config = load_config("shapes-tiny")
    train_args = ["--config", "shapes-tiny", "--output", str(args.output)]
    if (args.output / "run-config.json").is_file():
        train_args = ["--output", str(args.output), "--resume"]
    for name, stage in config.stages().items():
        train_args += ["--set", f"{name}.train.max_minutes={stage.train.max_minutes * args.minutes_scale}"]
    code = train(train_args)
    if code != 0:
        return code

    from imagen import Imagen
    from imagen.eval import evaluate
    from imagen.eval.model import held_out_prompts
    from imagen.grid import labelled_grid
    from imagen.images import to_pil
    from imagen.io import atomic_write

    pipe = Imagen.from_pretrained(args.output)
    prompts = held_out_prompts(args.prompts) + held_out_prompts(2, objects=2)
    print(f"demo: drawing {len(prompts)} held-out prompts through {', '.join(pipe.stages)}", file=sys.stderr)
    outputs = pipe.generate(prompts, seed=0, max_batch_size=4)
    samples = args.output / "samples"
    samples.mkdir(exist_ok=True)
    for images in outputs.values():
        grid = labelled_grid(to_pil(images), prompts, columns=5, cell=min(256, images.shape[-1]))
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG")
        atomic_write(samples / f"grid_{images.shape[-1]}.png", buffer.getvalue())
    judged = held_out_prompts(args.eval_prompts)
    print(f"demo: judging {len(judged)} held-out prompts at 64 px", file=sys.stderr)
    base = pipe.generate(judged, seed=1000, stop_at_stage="base", max_batch_size=16)["base"]
    scores = evaluate(base, judged)["one_object"]
    atomic_write(samples / "compliance.json", json.dumps(scores, indent=2))
    table = "  ".join(f"{k} {scores[k]:.0%}" for k in ("background", "object_color", "position", "shape", "size")
                      if scores.get(k) is not None)
    print(f"demo: base 64 px compliance on held-out prompts: {table}", file=sys.stderr)
    print(f"demo: grids in {samples} ({(time.perf_counter() - started) / 60:.1f} min); sample more with: "
          f"imagen-sample --model {args.output} --prompt \"a large red circle at the center on a blue background\"",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
