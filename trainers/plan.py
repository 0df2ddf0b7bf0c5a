"""`imagen-train --plan`: the memory a stage needs to train, per GPU, before any GPU is touched.

Per stage: the parameters (counted on the meta device, nothing allocated), their gradients, the optimiser state
(AdamW: two fp32 moments; Adafactor: factored second moments, plus a first moment when betas[0] > 0) and the
EMA copy; and the activations one training sample keeps for the backward pass at the training resolution (or
crop), with and without gradient checkpointing, in fp32 and under bf16 autocast. Activations are measured by
running the real network at two reduced widths on this machine (channels / 16 and / 32, the same number of
attention heads) and extrapolating linearly in the width, which is exact for convolutions, norms and
projections, and keeps attention maps (set by heads and tokens, not width) as measured. Activations are those
of torch's CPU kernels; a GPU's fused attention (flash / memory-efficient SDPA) keeps less.

The largest batch per GPU = (memory x 0.9 - static) / activations per sample, where static is parameters +
gradients + optimiser + EMA (+ the bf16 copies of the weights autocast keeps), divided by the number of GPUs when
they are sharded (FSDP, which also keeps the largest unit whole while it runs: see `StagePlan.max_batch`). The
weights autograd saves are not activations: they are counted once, as parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from configs import RunConfig, StageConfig

# hidden size of the T5 encoders a config may name (the embedded one is read from its files)
T5_WIDTHS = {"google/t5-v1_1-small": 512, "google/t5-v1_1-base": 768, "google/t5-v1_1-large": 1024,
             "google/t5-v1_1-xl": 2048, "google/t5-v1_1-xxl": 4096, "t5-small": 512, "t5-base": 768,
             "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024}
USABLE = 0.9  # share of a GPU's memory a plan fills (the allocator, CUDA context and fragmentation take the rest)
REDUCTIONS = (16, 32)
DIRECT_WIDTH = 64  # channels up to which activations are measured at full width


@dataclass(frozen=True)
class StagePlan:
    name: str
    resolution: int  # the training size (the crop for a stage trained on crops)
    parameters: int
    params_bytes: int
    grads_bytes: int
    optimizer_bytes: int
    ema_bytes: int
    activations: dict  # {"fp32" | "bf16": {"plain" | "checkpointing": bytes per sample}}
    sharded_optimizer_bytes: int = 0  # AdamW's, whatever the config's optimiser: sharding needs AdamW
    largest_unit: int = 0  # parameters of the largest FSDP unit (a U-Net level, or the rest of the net)

    @property
    def static_bytes(self) -> int:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.ema_bytes

    @property
    def sharded_static_bytes(self) -> int:
        return self.static_bytes - self.optimizer_bytes + self.sharded_optimizer_bytes

    def max_batch(self, gpu_bytes: float, gpus: int, sharded: bool, precision: str, checkpointing: bool) -> int:
        # under bf16 autocast a bf16 copy of every weight is kept for the backward pass (of the shard in use)
        copies = 2 * self.parameters if precision == "bf16" else 0
        # sharded, the largest unit is whole while it runs: its gathered weights, the next unit's (prefetched)
        # and its full gradient before the reduce-scatter
        gathered = 3 * 4 * self.largest_unit
        static = (self.sharded_static_bytes + copies) / gpus + gathered if sharded else self.static_bytes + copies
        per_sample = self.activations[precision]["checkpointing" if checkpointing else "plain"]
        return max(0, math.floor((gpu_bytes * USABLE - static) / per_sample))


def text_width(config: RunConfig) -> int:
    if config.text.name in T5_WIDTHS:
        return T5_WIDTHS[config.text.name]
    import json

    from imagen.text import resolve_text_encoder

    try:
        return int(json.loads((resolve_text_encoder(config.text.name) / "config.json").read_text())["d_model"])
    except (ValueError, OSError, KeyError):
        return 4096


def plan_stage(name: str, config: StageConfig, text_dim: int, text_length: int,
               only: tuple[str, str] | None = None) -> StagePlan:
    """The stage's memory; activations measured for every (precision, "plain" | "checkpointing"), or `only` one."""
    from unets import EfficientUNet

    with torch.device("meta"):
        net = EfficientUNet(config.unet, text_dim=text_dim, lowres_cond=config.is_super_resolution)
    params = list(net.parameters())
    count = sum(p.numel() for p in params)
    size = config.train.crop_size or config.resolution
    wanted = [only] if only else [(p, m) for p in ("fp32", "bf16") for m in ("plain", "checkpointing")]
    activations: dict = {}
    for precision, mode in wanted:
        activations.setdefault(precision, {})[mode] = activation_bytes(config, text_dim, text_length, size, precision,
                                                                       mode == "checkpointing")
    return StagePlan(name=name, resolution=size, parameters=count, params_bytes=4 * count, grads_bytes=4 * count,
                     optimizer_bytes=_optimizer_bytes(params, config), ema_bytes=4 * count, activations=activations,
                     sharded_optimizer_bytes=8 * count, largest_unit=_largest_unit(net))


def _largest_unit(net) -> int:
    """Parameters of the largest FSDP unit of `net` (trainers.sharding: one per level, the rest the root)."""
    levels = [sum(p.numel() for p in level.parameters()) for level in (*net.downs, *net.ups)]
    return max(*levels, sum(p.numel() for p in net.parameters()) - sum(levels))


def _optimizer_bytes(params: list[torch.Tensor], config: StageConfig) -> int:
    train = config.train
    if train.optimizer == "adamw":
        return 8 * sum(p.numel() for p in params)
    total = 0
    for p in params:  # Adafactor factors the second moment of a matrix over its last two dimensions
        shape = p.shape
        second = (math.prod(shape[:-2]) * (shape[-2] + shape[-1])) if p.dim() >= 2 else p.numel()
        total += 4 * second + (4 * p.numel() if train.betas[0] else 0)
    return total


def activation_bytes(config: StageConfig, text_dim: int, text_length: int, size: int, precision: str,
                     checkpointing: bool) -> int:
    """Bytes one training sample keeps for the backward pass at full width, extrapolated from two reduced
    widths (see the module docstring), or measured directly for a net of at most DIRECT_WIDTH channels."""
    if config.unet.channels <= DIRECT_WIDTH:  # small enough to measure as it is
        unet = replace(config.unet, gradient_checkpointing=checkpointing)
        return measure_activations(replace(config, unet=unet), text_dim, text_length, size, precision)
    widths, measured = [], []
    for k in REDUCTIONS:
        unet = replace(config.unet, channels=max(1, config.unet.channels // k),
                       head_dim=max(1, config.unet.head_dim // k), cond_dim=max(8, config.unet.cond_dim // k),
                       gradient_checkpointing=checkpointing)
        widths.append(unet.channels)
        measured.append(measure_activations(replace(config, unet=unet), text_dim, text_length, size, precision))
    slope = (measured[0] - measured[1]) / (widths[0] - widths[1])
    return int(measured[0] + slope * (config.unet.channels - widths[0]))


def measure_activations(config: StageConfig, text_dim: int, text_length: int, size: int, precision: str,
                        batch: int = 1) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training forward (distinct storages),
    plus, with gradient checkpointing, the largest recomputed block. Runs on this machine's CPU."""
    from unets import EfficientUNet

    with torch.random.fork_rng():  # the measurement leaves the caller's random state as it was
        torch.manual_seed(0)
        net = EfficientUNet(config.unet, text_dim=text_dim, lowres_cond=config.is_super_resolution).train()
    kept: dict[int, int] = {}
    keep = _keeper(net, kept)

    inputs = unet_inputs(batch, size, text_dim, text_length, config.is_super_resolution)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), autocast:
        net(*inputs[0], **inputs[1])
    total = sum(kept.values())
    if config.unet.gradient_checkpointing:
        total += _largest_block(net, inputs, precision)
    return total


def _largest_block(net, inputs, precision: str) -> int:
    """The activations of the largest checkpointed block, which backward recomputes and holds at once."""
    largest = 0
    blocks = [m for m in net.modules() if type(m).__name__ in ("ResBlock", "AttentionBlock")]
    current: dict[int, int] = {}
    keep = _keeper(net, current)

    def start(*_):
        current.clear()

    def end(*_):
        nonlocal largest
        largest = max(largest, sum(current.values()))

    handles = [h for b in blocks for h in (b.register_forward_pre_hook(start), b.register_forward_hook(end))]
    net.config = replace(net.config, gradient_checkpointing=False)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    try:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), autocast:
            net(*inputs[0], **inputs[1])
    finally:
        for handle in handles:
            handle.remove()
    return largest


def _keeper(net: torch.nn.Module, kept: dict[int, int]):
    """A saved-tensor hook recording each distinct storage autograd keeps, but not the weights (counted as
    parameters) nor their bf16 copies under autocast (counted with the static memory)."""
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    shapes = {tuple(p.shape) for p in net.parameters() if p.dim() > 1}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        weight_copy = tensor.dtype == torch.bfloat16 and tuple(tensor.shape) in shapes
        if storage.data_ptr() not in weights and not weight_copy:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    return keep


def unet_inputs(batch: int, size: int, text_dim: int, text_length: int, lowres: bool) -> tuple[tuple, dict]:
    """Random inputs of a U-Net training or sampling forward: ((x, t), keyword arguments), seeded."""
    generator = torch.Generator().manual_seed(0)
    kwargs = {"text_embeds": torch.randn(batch, text_length, text_dim, generator=generator),
              "text_mask": torch.ones(batch, text_length, dtype=torch.bool),
              "drop_text": torch.zeros(batch, dtype=torch.bool)}
    if lowres:
        kwargs |= {"lowres": torch.randn(batch, 3, size, size, generator=generator),
                   "lowres_level": torch.full((batch,), 0.1)}
    return (torch.randn(batch, 3, size, size, generator=generator), torch.rand(batch, generator=generator)), kwargs


def plan(config: RunConfig, stages: list[str]) -> list[StagePlan]:
    dim = text_width(config)
    return [plan_stage(name, config.stages()[name], dim, config.text.max_length) for name in stages]


def check_training_memory(config: RunConfig, stages: list[str], world: int = 1) -> None:
    """ValueError, before anything is allocated, for a stage whose training step at its batch needs more memory
    than this device has (a GPU's free memory, else the machine's available memory): the plan's static memory
    plus its activations per sample times the micro-batch of one process."""
    from imagen.io import available_memory

    available = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else available_memory()
    if available is None:
        return
    dim = text_width(config)
    for name in stages:
        stage = config.stages()[name]
        train = stage.train
        micro = max(1, train.batch_size // (world * train.grad_accum))
        precision = "bf16" if train.mixed_precision == "bf16" else "fp32"
        mode = "checkpointing" if stage.unet.gradient_checkpointing else "plain"
        p = plan_stage(name, stage, dim, config.text.max_length, only=(precision, mode))  # one measurement at start-up
        per_sample = p.activations[precision][mode]
        needed = p.static_bytes + micro * per_sample
        if needed > available:
            raise ValueError(f"stage {name}: a training step of {micro} samples per process needs about "
                             f"{needed / 2**30:,.1f} GiB ({p.static_bytes / 2**30:,.1f} for weights, gradients, "
                             f"optimiser and EMA, {per_sample / 2**20:,.0f} MiB per sample), more than the "
                             f"{available / 2**30:,.1f} GiB available: lower train.batch_size, raise "
                             "train.grad_accum or set unet.gradient_checkpointing=true (--no-memory-check to try "
                             "anyway)")


def parse_memory(text: str) -> float:
    """'80GB', '80 GiB', '40G' or a number of bytes -> bytes (GB read as GiB, as GPU memory is quoted)."""
    cleaned = text.strip().upper().replace(" ", "").removesuffix("B").removesuffix("I")
    scale = {"G": 2**30, "M": 2**20, "T": 2**40}.get(cleaned[-1:], 1)
    try:
        value = float(cleaned[:-1] if scale != 1 else cleaned)
    except ValueError:
        raise ValueError(f"--gpu-memory {text!r}: give a size such as 80GB or 40GiB") from None
    if value <= 0:
        raise ValueError(f"--gpu-memory {text!r} must be positive")
    return value * scale


def report(plans: list[StagePlan], gpus: int, gpu_bytes: float) -> str:
    gib = 2**30
    lines = [f"memory plan for {gpus} GPU(s) of {gpu_bytes / gib:.0f} GiB ({USABLE:.0%} usable); static = "
             "parameters + gradients + optimiser + EMA (fp32); activations per training sample"]
    for p in plans:
        lines.append(f"{p.name}: {p.parameters / 1e6:,.0f}M parameters at {p.resolution} px; static "
                     f"{p.static_bytes / gib:.1f} GiB (params {p.params_bytes / gib:.1f}, grads "
                     f"{p.grads_bytes / gib:.1f}, optimiser {p.optimizer_bytes / gib:.1f}, EMA {p.ema_bytes / gib:.1f})"
                     f", {p.sharded_static_bytes / gpus / gib:.1f} GiB per GPU sharded"
                     + (" (with AdamW, which sharding needs)" if p.sharded_optimizer_bytes != p.optimizer_bytes
                        else ""))
        for precision in ("fp32", "bf16"):
            act = p.activations[precision]
            batches = [p.max_batch(gpu_bytes, gpus, sharded, precision, ckpt)
                       for sharded in (False, True) for ckpt in (False, True)]
            lines.append(f"  {precision}: activations {act['plain'] / 2**20:,.0f} MiB/sample "
                         f"({act['checkpointing'] / 2**20:,.0f} with checkpointing); largest batch per GPU: "
                         f"{batches[0]} ({batches[1]} with checkpointing), sharded {batches[2]} "
                         f"({batches[3]} with checkpointing)")
    return "\n".join(lines)
