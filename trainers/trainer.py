"""Training one stage of a cascade with accelerate: one process, one GPU or many (DDP through
`accelerate launch`, or sharded with FSDP: `trainers.sharding`), exact resume, atomic checkpoints, EMA,
logging and preview grids.

Every random draw of step k comes from a generator seeded by (train.seed, k): the global batch's noise is
drawn whole and each process takes its rows, so a step is a pure function of (weights, data position, k).
Resuming from a checkpoint therefore repeats an uninterrupted run exactly, and N processes compute the
same gradients as one process at the same global batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from configs import RunConfig
from imagen import checkpoint
from imagen.lora import add_lora, has_lora, load_base_weights
from imagen.stage import Stage, draw_training_noise
from imagen.text import TextEncoder

from .checkpoints import list_checkpoints, load_checkpoint, save_checkpoint
from .data import build_dataset, make_loader
from .monitor import Monitor, preview_batch, preview_grid
from .optim import build_ema, build_optimizer, build_scheduler
from .sharding import (
    as_tensor,
    full_weights,
    is_sharded,
    load_full_weights,
    load_sharded_checkpoint,
    no_gradient_sync,
    save_sharded_checkpoint,
    shard,
)
from .text_features import TextFeatures


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. non-finite losses); the message says why and what to change."""


@dataclass
class StageResult:
    step: int
    reason: str  # "max_steps", "time budget", "interrupted"
    ema_state: dict[str, torch.Tensor]


def step_seed(seed: int, step: int) -> int:
    digest = hashlib.sha256(f"imagen-train:{seed}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


class StopFlag:
    """Set by SIGTERM / SIGINT; the loop checkpoints and stops at the end of the current step."""

    def __init__(self):
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StageTrainer:
    """Trains stage `name` of `run` under `stage_dir` (checkpoints/, metrics.jsonl, tensorboard/, samples/)."""

    def __init__(self, run: RunConfig, name: str, stage_dir: Path, accelerator: Accelerator,
                 text_encoder: TextEncoder, *, cache_dir: Path | None = None, progress: bool = True):
        self.run, self.name, self.dir, self.acc = run, name, Path(stage_dir), accelerator
        self.config = run.stages()[name]
        self.train = self.config.train
        self.progress = progress and accelerator.is_main_process
        world = accelerator.num_processes
        per_rank, micro = _batch_split(self.train.batch_size, world, self.train.grad_accum)
        self.per_rank, self.micro = per_rank, micro
        self.sharded = is_sharded(self.train, accelerator)
        torch.manual_seed(self.train.seed)  # the same initial weights in every process
        self.text_dim = text_encoder.embed_dim
        self.stage = self._build_stage()
        if self.sharded:  # the EMA copy is sharded alike: a second stage, not a deep copy of the first
            ema_stage = self._build_stage()
            self.ema = build_ema(self.stage.net, self.train, ema_model=ema_stage.net)
        else:
            self.ema = build_ema(self.stage.net, self.train)
        self.optimizer = build_optimizer(self.stage.parameters(), self.train)
        self.step, self.elapsed, self.data_state = 0, 0.0, None
        # the schedule counts optimiser steps of the global batch: not prepared, which would step it once per process
        self.scheduler = build_scheduler(self.optimizer, self.train, lambda: self.elapsed)
        if self.sharded:
            self.model, self.optimizer = self.stage, accelerator.prepare(self.optimizer)
        else:
            self.model, self.optimizer = accelerator.prepare(self.stage, self.optimizer)
        self.ema.to(accelerator.device)
        size = self.train.crop_size or self.config.resolution
        self.size = size
        self.dataset = build_dataset(run.data, self.config.resolution, crop_size=self.train.crop_size,
                                     lowres_resolution=self.config.lowres_resolution,
                                     crop_candidates=self.train.crop_candidates,
                                     rank=accelerator.process_index, world_size=world)
        self.text = TextFeatures(text_encoder, self.dataset, cache_dir if run.data.cache_text else None,
                                 accelerator, fixed_length=self.train.compile, progress=self.progress)

    def _build_stage(self) -> Stage:
        stage = self._plain_stage()
        if self.train.compile:
            # in place: the state dict keeps its names; sizes fixed, as the stages before this one in the same
            # process ran the same forward code at other sizes (torch would recompile it with symbolic ones)
            stage.net.compile(dynamic=False)
        if self.sharded:
            shard(stage, self.acc)
        return stage

    def _plain_stage(self) -> Stage:
        """A fresh stage of this architecture, with the run's adapters when it trains LoRA."""
        stage = Stage(self.config, self.text_dim)
        if self.train.lora_rank:
            add_lora(stage.net, self.train.lora_rank, self.train.lora_alpha, self.train.lora_conv,
                     target=self.train.lora_target)
        return stage

    # -- checkpoints ---------------------------------------------------------------------------------
    def resume(self) -> bool:
        """Restore the newest checkpoint of this stage that verifies (a damaged one is reported on stderr and
        the one before it tried). Returns whether one was restored."""
        found = list_checkpoints(self.dir / "checkpoints")
        if not found:
            return False
        if self.sharded:
            restored = load_sharded_checkpoint(found, self.model, self.optimizer, self.ema, self.acc)
            if restored is None:
                raise ValueError(f"no checkpoint of stage {self.name} in {self.dir / 'checkpoints'} can be used "
                                 "(each was reported above); delete them to start the stage again")
            self._restore_unsharded(*restored)
            return True
        for path in reversed(found):
            try:
                step, state = load_checkpoint(path)
                break
            except ValueError as e:
                if self.acc.is_main_process:
                    print(f"imagen-train: {self.name}: {e}; trying the checkpoint before it", file=sys.stderr)
        else:
            raise ValueError(f"no checkpoint of stage {self.name} in {self.dir / 'checkpoints'} can be used (each "
                             "was reported above); delete them to start the stage again")
        self.acc.unwrap_model(self.model).load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._restore_unsharded(step, state)
        return True

    def _restore_unsharded(self, step: int, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.elapsed, self.data_state = step, float(state["elapsed"]), state["data"]
        if state.get("rng") is not None:
            torch.set_rng_state(state["rng"])

    def start_from(self, weights: dict[str, torch.Tensor], path: Path) -> None:
        """Start from trained U-Net weights (fine-tuning; the optimiser and schedule start fresh), live and EMA;
        ValueError naming the first tensor that does not fit this stage's architecture."""
        net = self.acc.unwrap_model(self.model).net
        # sharded: checked and loaded on an unsharded copy, then each process keeps its shards of it
        target = self._plain_stage().net if self.sharded else net
        (load_base_weights if has_lora(target) else checkpoint.load_weights)(target, weights, path)
        if self.sharded:
            load_full_weights(net, target.state_dict())
        self.ema.copy_params_from_model_to_ema()

    def save(self, loader) -> None:
        state = {"scheduler": self.scheduler.state_dict(), "elapsed": self.elapsed, "data": loader.state_dict(),
                 "rng": torch.get_rng_state()}
        if self.sharded:
            save_sharded_checkpoint(self.dir / "checkpoints", self.step, state, self.model, self.optimizer,
                                    self.ema, self.train.keep_checkpoints, self.acc)
            return
        state.update(model=self.acc.unwrap_model(self.model).state_dict(), ema=self.ema.state_dict(),
                     optimizer=self.optimizer.state_dict())
        if self.acc.is_main_process:
            save_checkpoint(self.dir / "checkpoints", self.step, state, keep=self.train.keep_checkpoints)
        self.acc.wait_for_everyone()

    # -- the loop ------------------------------------------------------------------------------------
    def fit(self, max_steps: int | None = None) -> StageResult:
        max_steps = max_steps or self.train.max_steps
        budget = self.train.max_minutes * 60.0
        loader = make_loader(self.dataset, self.per_rank, seed=self.train.seed, rank=self.acc.process_index,
                             world_size=self.acc.num_processes, num_workers=self.train.num_workers,
                             start_state=self.data_state)
        monitor = Monitor(self.dir, self.name, enabled=self.acc.is_main_process, progress=self.progress,
                          total=max_steps, start=self.step, budget_s=budget, elapsed_s=self.elapsed)
        bad_in_a_row = 0
        batches = iter(loader)
        with StopFlag() as stop:
            while True:
                reason = self._stop_reason(max_steps, budget, stop)
                if reason is not None:
                    break
                started = time.perf_counter()
                loss, grad_norm = self._train_step(next(batches))
                if not torch.isfinite(loss):
                    bad_in_a_row += 1
                    if bad_in_a_row >= self.train.nan_patience:
                        raise TrainingError(
                            f"stage {self.name}: the loss was not finite for {bad_in_a_row} steps in a row (step "
                            f"{self.step}); lower {self.name}.train.lr, keep train.grad_clip on, or use fp32")
                    monitor.skipped(self.step, float(loss))
                    continue
                bad_in_a_row = 0
                self.step += 1
                self.elapsed += time.perf_counter() - started
                monitor.step(self.step, float(loss), self.scheduler.get_last_lr()[0], grad_norm, self.elapsed,
                             images=self.train.batch_size, log=self.step % self.train.log_every == 0)
                if self.step % self.train.checkpoint_every == 0:
                    self.save(loader)
                if self.train.sample_every and self.step % self.train.sample_every == 0:
                    self.preview(monitor)
        self.save(loader)
        monitor.close(reason, self.step)
        self.acc.wait_for_everyone()
        return StageResult(self.step, reason, self.ema_weights())

    def _stop_reason(self, max_steps: int, budget: float, stop: StopFlag) -> str | None:
        """Why the loop ends before the next step, if it does. Several processes first agree on the main
        process's clock and on a signal any of them caught: one that stopped alone would leave the others
        waiting forever in the next step's gradient all-reduce."""
        interrupted = stop.signal is not None
        if self.acc.num_processes > 1:
            shared = torch.tensor([self.elapsed if self.acc.is_main_process else 0.0, float(interrupted)],
                                  dtype=torch.float64, device=self.acc.device)
            shared = self.acc.reduce(shared, reduction="sum")
            self.elapsed, interrupted = float(shared[0]), bool(shared[1])
        if self.step >= max_steps:
            return "max_steps"
        if budget and self.elapsed >= budget:
            return "time budget"
        return "interrupted" if interrupted else None

    def _train_step(self, batch: dict) -> tuple[torch.Tensor, float]:
        """One optimizer step on a global batch. Returns the loss averaged over all processes and the gradient
        norm; on a non-finite loss nothing is updated."""
        loss = self.accumulate_gradients(batch)
        if not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            return loss, float("nan")
        grad_norm = float("nan")
        if self.train.grad_clip > 0:
            grad_norm = float(as_tensor(self.acc.clip_grad_norm_(self.model.parameters(), self.train.grad_clip)))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update()
        return loss, grad_norm

    def accumulate_gradients(self, batch: dict) -> torch.Tensor:
        """Forward and backward of this process's rows of the global batch, in micro-batches, with the noise
        of step `self.step`; gradients end up averaged over processes. Returns the mean loss over all."""
        device = self.acc.device
        generator = torch.Generator(device).manual_seed(step_seed(self.train.seed, self.step))
        torch.manual_seed(step_seed(self.train.seed + 1, self.step))  # dropout and other global draws
        noise = draw_training_noise(self.config, self.train.batch_size, self.size, generator, device)
        first = self.acc.process_index * self.per_rank
        embeds, mask = self.text(batch["caption"])
        images = batch["image"].to(device)
        lowres = batch["lowres"].to(device) if "lowres" in batch else None
        pixel_weight = batch["pixel_weight"].to(device) if "pixel_weight" in batch else None
        total = torch.zeros((), device=device)
        micro_steps = self.per_rank // self.micro
        for k in range(micro_steps):
            rows = slice(k * self.micro, (k + 1) * self.micro)
            global_rows = slice(first + rows.start, first + rows.stop)
            sync = nullcontext() if k == micro_steps - 1 else (
                no_gradient_sync(self.model) if self.sharded else self.acc.no_sync(self.model))
            with sync, self.acc.autocast():
                loss = self.model(images[rows], embeds[rows], mask[rows], noise.rows(global_rows),
                                  None if lowres is None else lowres[rows],
                                  None if pixel_weight is None else pixel_weight[rows]).mean() / micro_steps
                self.acc.backward(loss)
            total += loss.detach()
        return self.acc.reduce(total, reduction="mean")

    # -- outputs -------------------------------------------------------------------------------------
    def ema_weights(self) -> dict[str, torch.Tensor]:
        """The EMA U-Net weights, unsharded, on the CPU (collective when sharded)."""
        if self.sharded:
            return full_weights(self.ema.ema_model)
        return {k: v.detach().cpu() for k, v in self.ema.ema_model.state_dict().items()}

    def preview(self, monitor: Monitor) -> None:
        """A labelled grid of EMA samples for held-out prompts (PNG + TensorBoard), drawn by the main process
        (from the gathered weights when sharded)."""
        weights = self.ema_weights() if self.sharded or self.acc.is_main_process else None
        if self.acc.is_main_process:
            sampler = self._plain_stage()
            sampler.net.load_state_dict(weights)
            grid = preview_grid(sampler, preview_batch(self.run, self.name), self.text.encoder, self.acc.device)
            monitor.image(self.step, grid)
        self.acc.wait_for_everyone()


def _batch_split(batch_size: int, world: int, grad_accum: int) -> tuple[int, int]:
    if batch_size % world:
        raise ValueError(f"train.batch_size {batch_size} (the global batch) must be divisible by the "
                         f"{world} processes")
    per_rank = batch_size // world
    if per_rank % grad_accum:
        raise ValueError(f"the per-process batch {per_rank} must be divisible by train.grad_accum {grad_accum}")
    return per_rank, per_rank // grad_accum

