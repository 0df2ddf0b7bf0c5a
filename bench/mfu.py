#!/usr/bin/env python
"""How close the U-Nets run to this machine's limit: model FLOP utilisation (MFU) of training steps and
sampling forwards, against the matmul rate measured beside them (fp32 on a CPU; on a GPU, `--device cuda`, the
steps run under bf16 autocast and the bar is the GPU's bf16 matmul rate).

For the shipped cascade's stages (their presets' training batch and crop; sampling: one image, so a guided stage
runs a doubled batch of 2 at full resolution, the 1024 px stage included) and the bench U-Nets of
`bench/unet_speed.py` (batch 8):

- FLOPs of one training step (forward + backward; torch.utils.flop_counter.FlopCounterMode) and of one sampling
  forward; the median time of a training step (forward, backward, the trainer's fused AdamW step) and of a
  sampling forward (inference mode); MFU = FLOPs / time / matmul rate (2048^2 fp32 on a CPU, 8192^2 bf16 on a
  GPU: the device's practical peak), in rounds that each take the bar again beside their timings, the median
  round's MFU reported with the rounds' range (a 2-core machine's speed drifts by a third between runs);
- where a step's time goes: self time per operator type (torch.profiler; CPU time, or GPU kernel time on a GPU),
  the top ones as shares, and the aten operator calls it dispatches (`train_op_calls`, `sample_op_calls`);
- with --levers, each lever alone on the sampling forward and the training step: the text encoded once per
  sampling run against in every forward, channels_last memory format, no_grad instead of inference_mode, fused
  AdamW against its per-tensor loop, the U-Nets' own GroupNorm backward against torch's (channels_last), 1x1
  convolutions as batched matrix products in sampling against torch's convolution, and torch.compile as the
  commands compile (sampling: weights frozen in, or CUDA graphs on a GPU; the cold compile
  cost, then the warm speed-up);
- with --sweep, MFU against batch size: the training and sampling batches times 1, 2, 4 and 8;
- glibc's own allocation with --glibc-malloc (by default the bench keeps freed memory for reuse, as the commands
  do: imagen.io.keep_freed_memory).

Usage:  python bench/mfu.py [--quick] [--levers] [--sweep] [--threads 2] [--device cuda] [--out FILE]
Prints a table, then one JSON line: {"matmul_gflops", "stages": {NAME: {"train_mfu", "sample_mfu", ...}},
"levers": {...}, "machine": {...}}.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from bench.common import emit, machine, median_time  # noqa: E402
from configs import TrainConfig  # noqa: E402
from imagen.io import keep_freed_memory  # noqa: E402
from trainers.optim import build_optimizer  # noqa: E402
from trainers.plan import unet_inputs  # noqa: E402
from unets.group_norm import GroupNorm  # noqa: E402
from unets.layers import PointwiseConv  # noqa: E402

TEXT_LEN = 16
SAMPLE_REPEATS = 5  # a sampling forward is short: this many times a training step's repeats
CPU = torch.device("cpu")
TRAIN = TrainConfig(lr=1e-5)  # the trainer's AdamW, its steps small enough to leave the weights as trained


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a wall-clock time covers it (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device = CPU, repeats: int = 7) -> float:
    """The device's practical peak: a 2048^2 fp32 product on a CPU, an 8192^2 bf16 one on a GPU."""
    size, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))

    def product():
        a @ b
        synchronize(device)

    seconds, _ = median_time(product, repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _on(inputs: tuple[tuple, dict], device: torch.device) -> tuple[tuple, dict]:
    args, kwargs = inputs
    return tuple(a.to(device) for a in args), {k: v.to(device) for k, v in kwargs.items()}


class Workload:
    """One U-Net with a training batch and a sampling batch: `train_step()` and `sample_forward()`, on `device`
    (float32 on a CPU, bf16 autocast on a GPU); each call returns once the device has finished it."""

    def __init__(self, name: str, net: torch.nn.Module, text_dim: int, lowres: bool, train_batch: int,
                 train_size: int, sample_batch: int, sample_size: int, device: torch.device = CPU):
        self.name, self.net, self.lowres, self.device = name, net.to(device), lowres, device
        self.train_inputs = _on(unet_inputs(train_batch, train_size, text_dim, TEXT_LEN, lowres), device)
        self.sample_inputs = _on(unet_inputs(sample_batch, sample_size, text_dim, TEXT_LEN, lowres), device)
        self.optimizer = build_optimizer(net.parameters(), TRAIN)
        self.encoded_sample_kwargs = self._encode_text(self.sample_inputs[1])  # once, before any count or timing
        self.shapes = {"train_batch": train_batch, "train_size": train_size, "sample_batch": sample_batch,
                       "sample_size": sample_size}

    def with_net(self, net: torch.nn.Module) -> Workload:
        """The same workload (inputs, encoded text) on another copy of its U-Net, with an optimiser of its own."""
        twin = copy.copy(self)
        twin.net = net.to(self.device)
        twin.optimizer = build_optimizer(twin.net.parameters(), TRAIN)
        return twin

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_backward(self, net=None) -> None:
        (x, t), kwargs = self.train_inputs
        with self._autocast():
            out = (self.net if net is None else net)(x, t, **kwargs)
        torch.nn.functional.mse_loss(out.float(), x).backward()

    def train_step(self, net=None) -> None:
        if not self.net.training:  # the mode is set only on a change: train() walks every module
            self.net.train()
        self.forward_backward(net)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)

    def sample_forward(self, net=None, mode=torch.inference_mode, encoded: bool = True) -> None:
        """One step's forward as a sampling run makes it: the text encoded once beforehand (`encode_text`, its
        keys and values included), not in the timed forward; `encoded=False`: encoded in every forward."""
        if self.net.training:
            self.net.eval()
        (x, t), kwargs = self.sample_inputs
        with mode(), self._autocast():
            (self.net if net is None else net)(x, t, **(self.encoded_sample_kwargs if encoded else kwargs))
        synchronize(self.device)

    def _encode_text(self, kwargs: dict) -> dict:
        """`kwargs` with the text replaced by the U-Net's encoding of it (`text=`), as a sampling run passes it."""
        text = {k: v for k, v in kwargs.items() if k.startswith("text_") or k == "drop_text"}
        rest = {k: v for k, v in kwargs.items() if k not in text}
        with torch.inference_mode(), self._autocast():
            return {**rest, "text": self.net.encode_text(**text, keys_values=True)}


def shipped_workloads(device: torch.device) -> list[Workload]:
    from imagen import Imagen

    pipe = Imagen.from_pretrained("shapes")
    loads = []
    for name, stage in pipe.stages.items():
        config = stage.config
        guided = config.sampler.guidance_scale != 1.0
        loads.append(Workload(f"shapes-{name}", stage.net, pipe.text_encoder.embed_dim, config.is_super_resolution,
                              config.train.batch_size, config.train.crop_size or config.resolution,
                              2 if guided else 1, config.resolution, device))
    return loads


def bench_workloads(device: torch.device, batch: int = 8) -> list[Workload]:
    from bench.unet_speed import OURS, TEXT_DIM, build_ours

    loads = []
    for name, spec in OURS.items():
        net = build_ours(name, {})[0]
        loads.append(Workload(f"bench-{name}", net, TEXT_DIM, spec["lowres_cond"], batch, spec["resolution"], batch,
                              spec["resolution"], device))
    return loads


def breakdown(fn, device: torch.device, top: int = 8) -> tuple[dict, int]:
    """Self time per operator type over one call of `fn` (CPU time, or GPU kernel time on a GPU), as shares of the
    total, the largest first; and how many aten operator calls it dispatched, nested ones included (each costs
    microseconds of dispatch whatever its size: on a small step, the overhead a compiled graph removes)."""
    from torch.profiler import ProfilerActivity, profile

    gpu = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if gpu else [])]) as prof:
        fn()
    events = prof.key_averages()
    if gpu:  # the kernels alone: an operator's device time is its kernels' time again
        rows = [(e.key, e.self_device_time_total) for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    else:
        rows = [(e.key, e.self_cpu_time_total) for e in events]
    total = sum(t for _, t in rows) or 1.0
    rows.sort(key=lambda r: -r[1])
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    return {key: round(t / total, 3) for key, t in rows[:top]}, calls


def measure(load: Workload, bar, repeats: int, rounds: int = 3, by_op: bool = True) -> dict:
    """FLOPs, times and MFU of the workload's training step and sampling forward. The machine's speed drifts
    (its matmul rate moved by a third between runs), so the bar is taken again in each of `rounds` rounds, right
    beside that round's timings (`bar()`: GFLOP/s), and MFU is the median of the rounds' ratios."""
    train_flops = count_flops(load.forward_backward)
    load.optimizer.zero_grad(set_to_none=True)
    sample_flops = count_flops(load.sample_forward)
    rates, train_times, sample_times = [], [], []
    for _ in range(rounds):
        rates.append(bar())
        train_times.append(median_time(load.train_step, repeats, warmup=1)[0])
        sample_times.append(median_time(load.sample_forward, SAMPLE_REPEATS * repeats, warmup=1)[0])
    row = {**load.shapes, "matmul_gflops": _sig(statistics.median(rates))}
    for kind, flops, times in (("train", train_flops, train_times), ("sample", sample_flops, sample_times)):
        mfus = [flops / s / 1e9 / rate for s, rate in zip(times, rates, strict=True)]
        seconds = statistics.median(times)
        row |= {f"{kind}_gflop": _sig(flops / 1e9), f"{kind}_s": _sig(seconds),
                f"{kind}_gflops": _sig(flops / seconds / 1e9), f"{kind}_mfu": _sig(statistics.median(mfus)),
                f"{kind}_mfu_range": [_sig(min(mfus)), _sig(max(mfus))]}
    if by_op:
        for kind, fn in (("train", load.train_step), ("sample", load.sample_forward)):
            row[f"{kind}_time_by_op"], row[f"{kind}_op_calls"] = breakdown(fn, load.device)
    return row


def batch_sweep(load: Workload, bar, repeats: int, factors=(1, 2, 4, 8)) -> list[dict]:
    """MFU of the workload's U-Net with its training and sampling batches multiplied by each factor (sampling
    several images at once, or a larger training batch)."""
    text_dim = load.train_inputs[1]["text_embeds"].shape[-1]
    rows = []
    for factor in factors:
        resized = Workload(load.name, load.net, text_dim, load.lowres, load.shapes["train_batch"] * factor,
                           load.shapes["train_size"], load.shapes["sample_batch"] * factor,
                           load.shapes["sample_size"], load.device)
        row = measure(resized, bar, repeats, by_op=False)
        rows.append({k: row[k] for k in ("train_batch", "train_mfu", "sample_batch", "sample_mfu", "sample_s")})
    return rows


def _sig(value: float) -> float:
    """Three significant digits, for the JSON."""
    return float(f"{value:.3g}")


def _interleaved_speedup(baseline, lever, pairs: int) -> float:
    """time(baseline) / time(lever), medians over `pairs` single calls of each made in turn, in alternating order
    (> 1: faster): the machine's drift, which moves a 2-core machine by a fifth within seconds, hits both alike."""
    for run in (baseline, lever):
        run()
    times = ([], [])
    for i in range(pairs):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (baseline, lever)[which]()
            times[which].append(time.perf_counter() - start)
    return round(statistics.median(times[0]) / statistics.median(times[1]), 3)


def levers(load: Workload, repeats: int) -> dict:
    """Each lever alone, as the time ratio baseline / lever (> 1: faster); channels_last against NCHW whatever
    the stage's default layout (the SR stages run channels_last)."""
    sample_pairs, train_pairs = 3 * SAMPLE_REPEATS * repeats, 3 * repeats
    out = {}
    # each lever timed in alternating single calls with its baseline (the machine drifts)
    out["sample_text_encoded_once_speedup"] = _interleaved_speedup(lambda: load.sample_forward(encoded=False),
                                                                   load.sample_forward, sample_pairs)
    out["sample_text_encoded_once_gflop_saved"] = _sig(
        (count_flops(lambda: load.sample_forward(encoded=False)) - count_flops(load.sample_forward)) / 1e9)
    out["sample_no_grad_vs_inference_mode"] = _interleaved_speedup(
        load.sample_forward, lambda: load.sample_forward(mode=torch.no_grad), sample_pairs)

    def sample_forward_with_torch_pointwise_conv():
        with mock.patch.object(PointwiseConv, "forward", nn.Conv2d.forward):
            load.sample_forward()

    out["sample_pointwise_matmul_speedup"] = _interleaved_speedup(sample_forward_with_torch_pointwise_conv,
                                                                  load.sample_forward, sample_pairs)
    looped_adamw = torch.optim.AdamW(load.net.parameters(), lr=TRAIN.lr, betas=TRAIN.betas,
                                     weight_decay=TRAIN.weight_decay, fused=False)  # the trainer's, looped

    def train_step_with_looped_adamw():
        fused, load.optimizer = load.optimizer, looped_adamw
        try:
            load.train_step()
        finally:
            load.optimizer = fused

    out["train_fused_adamw_speedup"] = _interleaved_speedup(train_step_with_looped_adamw, load.train_step, train_pairs)
    kernels = [p for p in load.net.parameters() if p.dim() == 4]
    nhwc = bool(kernels) and kernels[0].is_contiguous(memory_format=torch.channels_last) \
        and not kernels[0].is_contiguous()
    if nhwc:  # the U-Nets' own GroupNorm backward serves channels_last training only

        def train_step_with_torch_group_norm():
            with mock.patch.object(GroupNorm, "forward", nn.GroupNorm.forward):
                load.train_step()

        out["train_own_group_norm_backward_speedup"] = _interleaved_speedup(train_step_with_torch_group_norm,
                                                                            load.train_step, train_pairs)
    # the other layout in a copy of the U-Net, so that the two alternate call by call
    other = load.with_net(copy.deepcopy(load.net).to(
        memory_format=torch.contiguous_format if nhwc else torch.channels_last))
    contiguous, channels_last = (other, load) if nhwc else (load, other)
    out["default_layout"] = "channels_last" if nhwc else "contiguous"
    out["channels_last_sample_speedup"] = _interleaved_speedup(contiguous.sample_forward,
                                                               channels_last.sample_forward, sample_pairs)
    out["channels_last_train_speedup"] = _interleaved_speedup(contiguous.train_step, channels_last.train_step,
                                                              train_pairs)
    # as the commands compile: sampling with the weights frozen in (Imagen.compile; CUDA graphs on a GPU),
    # training plainly (imagen-train --compile); one compiled module per kind, their shapes differ
    sample_compile = {"mode": "reduce-overhead"} if load.device.type == "cuda" else {"options": {"freezing": True}}
    for kind, run, pairs, kwargs in (("sample", load.sample_forward, sample_pairs, sample_compile),
                                     ("train", load.train_step, train_pairs, {})):
        torch._dynamo.reset()
        compiled = torch.compile(load.net, dynamic=False, **kwargs)
        try:
            start = time.perf_counter()
            run(compiled)
            out[f"compile_{kind}_cold_s"] = round(time.perf_counter() - start, 1)
            out[f"compile_{kind}_speedup"] = _interleaved_speedup(run, lambda r=run, c=compiled: r(c), pairs)
        except Exception as error:  # noqa: BLE001 - a compiler failure is a finding of the bench
            out[f"compile_{kind}_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two timed repeats, the shipped stages only")
    parser.add_argument("--levers", action="store_true", help="also measure each lever (channels_last, no_grad, "
                                                               "torch.compile) on every workload")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--sweep", action="store_true", help="also MFU against batch size (x1, x2, x4, x8 the "
                                                                 "training and sampling batches) on every workload")
    parser.add_argument("--only", help="comma-separated workload names (e.g. shapes-sr2) to measure alone")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="leave glibc's allocation as it is (the commands call imagen.io.keep_freed_memory)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: bf16 autocast against the GPU's bf16 "
                                                        "matmul rate")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA GPU here; leave out --device to measure on the CPU")
    if not args.glibc_malloc:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    repeats, rounds = (2, 3) if args.quick else (5, 5)
    rate = matmul_gflops(device)

    def bar() -> float:
        return matmul_gflops(device, repeats=3)

    print(f"{'bf16 matmul 8192^2' if device.type == 'cuda' else 'fp32 matmul 2048^2'}: {rate:.1f} GFLOP/s",
          file=sys.stderr, flush=True)
    loads = shipped_workloads(device) + ([] if args.quick else bench_workloads(device))
    if args.only:
        loads = [load for load in loads if load.name in args.only.split(",")]
    stages, lever_rows = {}, {}
    for load in loads:
        stages[load.name] = measure(load, bar, repeats, rounds)
        row = stages[load.name]
        low, high = row["sample_mfu_range"]
        print(f"{load.name:>14}: train {row['train_gflops']:6.1f} GFLOP/s (MFU {row['train_mfu']:.0%}), sample "
              f"{row['sample_gflops']:6.1f} GFLOP/s (MFU {row['sample_mfu']:.0%}, rounds {low:.0%}-{high:.0%}) in "
              f"{row['sample_s']:.3f} s; bar {row['matmul_gflops']:.0f} GFLOP/s; operator calls "
              f"{row['train_op_calls']} / {row['sample_op_calls']}", file=sys.stderr, flush=True)
        if args.sweep:
            row["batch_sweep"] = batch_sweep(load, bar, repeats)
            print(f"{'':>14}  batch sweep: {row['batch_sweep']}", file=sys.stderr, flush=True)
        if args.levers:
            lever_rows[load.name] = levers(load, repeats)
            print(f"{'':>14}  levers: {lever_rows[load.name]}", file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    emit({"matmul_gflops": round(rate, 1), "device": name, "glibc_malloc": args.glibc_malloc, "stages": stages,
          "levers": lever_rows, "machine": machine(args.threads)}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
