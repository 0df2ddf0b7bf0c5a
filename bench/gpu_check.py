"""The checks that need a GPU, as one short script: run it when a GPU machine is at hand (a few minutes).

    python bench/gpu_check.py [--out gpu.json]            # on a CUDA GPU, full width
    python bench/gpu_check.py --device cpu --quick        # the same code paths on a CPU, reduced width

Sections, each a key of the JSON line:
  matmul      bf16 and fp32 matmul rates of the device (TFLOP/s), the bar for MFU figures
  sdpa        the U-Net's attention shape under each scaled-dot-product kernel (flash, memory-efficient, math):
              which run, and their times
  sample      the shipped `shapes` cascade, one 1024 px image, loaded as float32 / bfloat16 / float16: the
              dtype the U-Net weights keep, seconds (median of 3), mean difference from float32 in RGB levels;
              then float32 compiled with CUDA graphs (`Imagen.compile(mode="reduce-overhead")`)
  train_bf16  20 steps of the tiny base (`imagen-train`), fp32 against bf16 autocast: the largest loss gap
  full_width  training steps of the paper's base (imagen-base-64, 2B parameters; text embeddings of
              T5-XXL's width drawn at random, the hub being out of reach) at --batch with bf16 and gradient
              checkpointing: the peak memory against what `imagen-train --plan` predicts for it, the step time
              and its MFU against the bf16 matmul rate
  full_width_compiled  the same with the U-Net compiled in place (as `imagen-train --compile`): the cold
              compile, then the warm step

A section that fails is reported as its error and the others still run: one call of a lent machine gives every
finding it can.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import emit, machine, median_time  # noqa: E402
from bench.mfu import count_flops, synchronize  # noqa: E402

PROMPT = "a small green square at the bottom right on a purple background"


def _timed(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    def run():
        fn()
        synchronize(device)
    return median_time(run, repeats, warmup=warmup)[0]


def matmul_section(device: torch.device, size: int) -> dict:
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
        out[f"{name}_tflops"] = round(2 * size**3 / _timed(lambda a=a, b=b: a @ b, device, 5) / 1e12, 3)
    return out


def sdpa_section(device: torch.device, quick: bool) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    batch, heads, tokens, head_dim = (2, 2, 64, 32) if quick else (32, 8, 256, 64)  # base 16 px level
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(batch, heads, tokens, head_dim, device=device, dtype=dtype) for _ in range(3))
    out = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                seconds = _timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), device, 5)
            out[backend.name.lower()] = {"ok": True, "ms": round(1e3 * seconds, 3)}
        except RuntimeError as error:
            out[backend.name.lower()] = {"ok": False, "error": str(error).splitlines()[0][:160]}
    return out


def sample_section(device: torch.device, quick: bool) -> dict:
    import numpy as np

    from imagen import Imagen

    out, reference = {}, None
    kwargs = {"seed": 0, "output_type": "np", "progress": False, **({"stop_at_stage": "sr1"} if quick else {})}
    for dtype in ("float32", "bfloat16", "float16"):
        if dtype == "float16" and device.type == "cpu":
            continue  # fp16 convolutions are a GPU feature
        pipe = Imagen.from_pretrained("shapes", device=device, dtype=dtype)
        image = pipe(PROMPT, **kwargs).images[0]  # also the warm-up of the timing
        seconds = _timed(lambda p=pipe: p(PROMPT, **kwargs), device, 1 if quick else 3, warmup=0)
        reference = image if reference is None else reference
        out[dtype] = {"weights": str(next(pipe.stages["base"].net.parameters()).dtype).replace("torch.", ""),
                      "seconds": round(seconds, 3), "size": int(image.shape[0]),
                      "mean_abs_vs_fp32_levels": round(float(np.abs(image - reference).mean() * 255), 3)}
    if device.type == "cuda":  # small U-Nets are launch-bound on a GPU: CUDA graphs are the lever to try
        pipe = Imagen.from_pretrained("shapes", device=device).compile(mode="reduce-overhead")
        started = time.perf_counter()
        image = pipe(PROMPT, **kwargs).images[0]
        cold = time.perf_counter() - started
        seconds = _timed(lambda: pipe(PROMPT, **kwargs), device, 3, warmup=0)
        out["float32_compiled_cuda_graphs"] = {
            "cold_s": round(cold, 1), "seconds": round(seconds, 3),
            "mean_abs_vs_fp32_levels": round(float(np.abs(image - reference).mean() * 255), 3)}
    return out


def train_bf16_section(device: torch.device, steps: int) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "trainers"))
    from conftest import TINY_BASE

    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("no", "bf16"):
            sets = [*TINY_BASE, "sr1=none", "sr2=none", f"base.train.max_steps={steps}",
                    f"base.train.mixed_precision={precision}", f"base.train.checkpoint_every={steps}"]
            command = [sys.executable, "-m", "trainers.cli", "--config", "shapes-tiny", "--output",
                       f"{tmp}/{precision}", "--no-progress", *[x for s in sets for x in ("--set", s)]]
            subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
            lines = Path(f"{tmp}/{precision}/base/metrics.jsonl").read_text().splitlines()
            losses[precision] = [r["loss"] for r in map(json.loads, lines) if "loss" in r]
    gaps = [abs(b - a) / abs(a) for a, b in zip(losses["no"], losses["bf16"], strict=True)]
    return {"steps": len(gaps), "max_relative_loss_gap": round(max(gaps), 4),
            "median_relative_loss_gap": round(statistics.median(gaps), 4)}


def full_width_section(device: torch.device, batch: int, quick: bool, bf16_tflops: float,
                       compiled: bool = False) -> dict:
    from configs import load_config
    from imagen.stage import Stage, draw_training_noise
    from trainers.optim import build_optimizer
    from trainers.plan import plan_stage, unet_inputs

    overrides = ["base.unet.gradient_checkpointing=true", "base.train.mixed_precision=bf16"]
    if quick:
        overrides += ["base.unet.channels=16"]
    config = load_config("imagen-base-64", overrides).stages()["base"]
    text_dim, text_length = 4096, 128 if not quick else 16
    planned = plan_stage("base", config, text_dim, text_length, only=("bf16", "checkpointing"))
    predicted = planned.static_bytes + 2 * planned.parameters + batch * planned.activations["bf16"]["checkpointing"]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with torch.device(device):
        stage = Stage(config, text_dim).train()
    ema = copy.deepcopy(stage.net).requires_grad_(False)  # held through the step: training keeps an EMA copy
    optimizer = build_optimizer(stage.parameters(), config.train)
    (x, _), kwargs = unet_inputs(batch, config.resolution, text_dim, text_length, lowres=False)
    noise = draw_training_noise(config, batch, config.resolution, torch.Generator(device).manual_seed(0), device)
    embeds, mask, x = kwargs["text_embeds"].to(device), kwargs["text_mask"].to(device), x.to(device)

    def forward_backward():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = stage(x, embeds, mask, noise, None).mean()
        loss.backward()

    def step():
        forward_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = count_flops(forward_backward)  # counted eagerly: a compiled graph runs the same products
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":  # the count's pass held twice the activations (61.8 GiB against 31.7): not a step's
        torch.cuda.reset_peak_memory_stats()
    extra = {}
    if compiled:
        stage.net.compile()  # in place, as `imagen-train --compile` does
        started = time.perf_counter()
        step()
        synchronize(device)
        extra["compile_cold_s"] = round(time.perf_counter() - started, 1)
    seconds = _timed(step, device, 1 if quick else 3)  # the first step, untimed, allocates the optimiser state
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    del ema
    tflops = flops / seconds / 1e12
    return {**extra, "parameters": planned.parameters, "batch": batch, "step_s": round(seconds, 3),
            "train_tflops": round(tflops, 2), "train_mfu": round(tflops / bf16_tflops, 3),
            "planned_gib": round(predicted / 2**30, 2),
            "measured_peak_gib": None if peak is None else round(peak / 2**30, 2),
            "measured_over_planned": None if peak is None else round(peak / predicted, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: the code paths)")
    parser.add_argument("--quick", action="store_true", help="reduced sizes: a CPU can run it in about a minute")
    parser.add_argument("--batch", type=int, default=64, help="full_width: per-GPU batch of the base step")
    parser.add_argument("--sections", default="matmul,sdpa,sample,train_bf16,full_width,full_width_compiled")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here; run on a GPU machine, or pass --device cpu --quick to try the "
                         "code paths")
    torch.manual_seed(0)
    matmul: dict = {}

    def matmul_rates() -> dict:
        if not matmul:
            matmul.update(matmul_section(device, 512 if args.quick else 8192))
        return matmul

    sections = {
        "matmul": matmul_rates,
        "sdpa": lambda: sdpa_section(device, args.quick),
        "sample": lambda: sample_section(device, args.quick),
        "train_bf16": lambda: train_bf16_section(device, 5 if args.quick else 20),
        "full_width": lambda: full_width_section(device, 2 if args.quick else args.batch, args.quick,
                                                 matmul_rates()["bf16_tflops"]),
        "full_width_compiled": lambda: full_width_section(device, 2 if args.quick else args.batch, args.quick,
                                                          matmul_rates()["bf16_tflops"], compiled=True),
    }
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "machine": machine()}
    for name in args.sections.split(","):
        started = time.perf_counter()
        try:
            result[name] = sections[name]()
        except Exception as error:  # noqa: BLE001 - a section's failure is its finding; the others still run
            result[name] = {"error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"}
        print(f"{name} ({time.perf_counter() - started:.0f} s): {result[name]}", file=sys.stderr, flush=True)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
