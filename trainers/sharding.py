"""Sharded training (FSDP) of one stage over the processes of a launch, on torch's FSDP2 `fully_shard`.

With `train.sharding = "fsdp"` under a launch of N > 1 processes (`accelerate launch` or `torchrun`), every
down and up level of the U-Net is one FSDP unit (its weights all-gathered for its forward and backward, then
freed) and the rest of the stage (stem, time and text conditioning, output) the root unit. Weights, gradients,
AdamW's moments and the EMA copy are DTensor shards, 1/N of each tensor per process. Gradients are
reduce-scattered and averaged, as DDP averages them, so N processes take the steps one process would take
with the same global batch. Gradient checkpointing (`unet.gradient_checkpointing`) works inside the units.

Checkpoints: the sharded tensors (model, optimiser, EMA) are written by every process with
`torch.distributed.checkpoint` into the checkpoint's `sharded/` directory; the main process then adds the
rest (schedule, data position, RNG) and a digest of every file, and renames the directory into place, so a
kill at any moment leaves the previous checkpoints whole, as for an unsharded run. Loading reshards: a run can
resume on another number of processes, and `imagen-train --export` reads the EMA weights in one process.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from configs import TrainConfig
from imagen.stage import Stage

from .checkpoints import load_checkpoint, publish_checkpoint, stage_checkpoint

SHARDS = "sharded"  # the checkpoint's subdirectory of torch.distributed.checkpoint files


def is_sharded(train: TrainConfig, accelerator: Accelerator) -> bool:
    """Whether this stage trains sharded: `train.sharding = "fsdp"` and more than one process. Refuses
    accelerate's own FSDP plugin, which would wrap the model a second time."""
    if accelerator.distributed_type == DistributedType.FSDP:
        raise ValueError("launch with a plain multi-process accelerate config (configs/accelerate/) and shard with "
                         "--set STAGE.train.sharding=fsdp; accelerate's own FSDP plugin is not used")
    return train.sharding == "fsdp" and accelerator.num_processes > 1


def shard(stage: Stage, accelerator: Accelerator) -> None:
    """Shard `stage` in place over the launch's processes: one unit per U-Net level, the rest the root."""
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for level in (*stage.net.downs, *stage.net.ups):
        fully_shard(level, mesh=mesh)
    fully_shard(stage, mesh=mesh)


@contextlib.contextmanager
def no_gradient_sync(model: nn.Module):
    """Accumulate this micro-batch's gradients locally (no reduce-scatter), as DDP's `no_sync`."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def as_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (e.g. the global gradient norm); a plain tensor unchanged."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict of a sharded `module`, on the CPU (collective: every process calls it)."""
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_weights(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load unsharded `weights` (the same in every process) into the sharded `module`: each keeps its shards."""
    set_model_state_dict(module, weights, options=StateDictOptions(full_state_dict=True))


def _sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module) -> dict:
    return {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer),
            "ema": ema.state_dict()}


def save_sharded_checkpoint(directory: Path, step: int, state: dict, model: nn.Module,
                            optimizer: torch.optim.Optimizer, ema: nn.Module, keep: int,
                            accelerator: Accelerator) -> None:
    """Checkpoint `step` of a sharded stage: every process writes its shards, the main process `state` (the
    unsharded rest) and publishes the directory atomically. Collective."""
    holder = [None]
    if accelerator.is_main_process:
        holder = [str(stage_checkpoint(directory, step, "sharded"))]
    broadcast_object_list(holder)
    staging = Path(holder[0])
    dcp.save(_sharded_state(model, optimizer, ema), checkpoint_id=staging / SHARDS)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        publish_checkpoint(staging, step, state, keep)
    accelerator.wait_for_everyone()


def load_sharded_checkpoint(paths: list[Path], model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module,
                            accelerator: Accelerator) -> tuple[int, dict] | None:
    """Restore the newest of `paths` (oldest first) whose digests verify (checked by the main process, which
    reports a damaged one on stderr), into the sharded `model`, `optimizer` and `ema`; returns (step, the
    unsharded rest of the state), or None when none verifies. Collective."""
    choice, verified = [None], None
    if accelerator.is_main_process:
        for index in reversed(range(len(paths))):
            try:
                verified = load_checkpoint(paths[index])
                choice = [index]
                break
            except ValueError as e:
                print(f"imagen-train: {e}; trying the checkpoint before it", file=sys.stderr)
    broadcast_object_list(choice)
    if choice[0] is None:
        return None
    path = paths[choice[0]]
    step, state = verified or load_checkpoint(path, verify_all=False)  # the main process read it already
    shards = _sharded_state(model, optimizer, ema)
    dcp.load(shards, checkpoint_id=path / SHARDS)
    set_model_state_dict(model, shards["model"])
    set_optimizer_state_dict(model, optimizer, shards["optimizer"])
    ema.load_state_dict(shards["ema"])
    return step, state


def is_sharded_checkpoint(path: Path) -> bool:
    return (path / SHARDS).is_dir()


def read_ema_weights(path: Path, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The EMA U-Net weights of sharded checkpoint `path`, unsharded, in one process (no launch needed);
    `template` is an unsharded U-Net state dict of the stage's architecture."""
    ema = {f"ema_model.{k}": torch.empty_like(v) for k, v in template.items()}
    dcp.load({"ema": ema}, checkpoint_id=path / SHARDS, no_dist=True)
    return {k: ema[f"ema_model.{k}"] for k in template}
