"""Training-step time with caption embeddings read from the disk cache vs encoding captions every step.

    python bench/text_cache.py [--quick] [--encoder embedded|t5-base]

A folder data set of rendered shapes images with .txt captions is written to a temp directory; the
shapes-tiny base stage trains on it for a few steps with data.cache_text on and off (median step time).
`--encoder t5-base` uses a randomly initialised T5 of t5-v1_1-base size (248M parameters, built locally),
where encoding costs what a real pretrained T5 costs. Prints one JSON object:
{"cached_step_s", "uncached_step_s", "speedup", "encoder", "cache_build_s", ...}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import emit, machine  # noqa: E402
from configs import load_config  # noqa: E402
from imagen.shapes import render, training_scene  # noqa: E402


def write_folder(directory: Path, count: int) -> None:
    for i in range(count):
        scene = training_scene(0, i)
        render(scene, 64).save(directory / f"{i:05d}.png")
        (directory / f"{i:05d}.txt").write_text(scene.caption)


def build_t5_base(directory: Path) -> None:
    """A random T5 of t5-v1_1-base size with the embedded tokenizer, saved like a pretrained one."""
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from imagen.text import EMBEDDED_DIR

    tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_DIR)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    T5EncoderModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def time_steps(config, run_dir: Path, steps: int) -> tuple[float, float]:
    """(median seconds per training step, seconds spent building the cache) for the base stage."""
    from accelerate import Accelerator

    from imagen.text import load_text_encoder
    from trainers.data import make_loader
    from trainers.trainer import StageTrainer

    accelerator = Accelerator(cpu=True)
    encoder = load_text_encoder(config.text)
    started = time.perf_counter()
    trainer = StageTrainer(config, "base", run_dir / "base", accelerator, encoder, cache_dir=run_dir / "text-cache",
                           progress=False)
    setup = time.perf_counter() - started
    batches = iter(make_loader(trainer.dataset, trainer.per_rank, seed=0))
    times = []
    for _ in range(steps + 1):
        batch = next(batches)
        started = time.perf_counter()
        trainer._train_step(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]), setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and images")
    parser.add_argument("--encoder", choices=["embedded", "t5-base"], default="t5-base")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    steps, count = (3, 64) if args.quick else (8, 256)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir()
        write_folder(tmp / "data", count)
        text = "embedded"
        if args.encoder == "t5-base":
            build_t5_base(tmp / "t5-base")
            text = str(tmp / "t5-base")
        base = ["sr1=none", "sr2=none", f"data.source={tmp / 'data'}", f"text.name={text}",
                "base.train.batch_size=32"]
        cached, build_s = time_steps(load_config("shapes-tiny", [*base, "data.cache_text=true"]), tmp / "cached",
                                     steps)
        uncached, _ = time_steps(load_config("shapes-tiny", [*base, "data.cache_text=false"]), tmp / "plain", steps)
    emit({"encoder": args.encoder, "batch": 32, "captions": count, "cached_step_s": round(cached, 3),
          "uncached_step_s": round(uncached, 3), "speedup": round(uncached / cached, 3),
          "cache_build_s": round(build_s, 2), "machine": machine()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
