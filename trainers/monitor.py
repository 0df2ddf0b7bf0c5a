"""What a training run shows and records: a tqdm bar (step, loss, it/s, ETA), metrics to TensorBoard and a
JSONL file, and labelled preview grids of samples for held-out prompts (PNG and TensorBoard)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from PIL import Image

from configs import RunConfig
from imagen.grid import labelled_grid
from imagen.images import to_pil, to_tensor
from imagen.io import atomic_write
from imagen.noise import generators
from imagen.resize import downsample
from imagen.shapes import held_out_scenes, render
from imagen.stage import Stage

PREVIEW_PROMPTS = 8


class Monitor:
    def __init__(self, directory: Path, name: str, *, enabled: bool, progress: bool, total: int, start: int,
                 budget_s: float, elapsed_s: float):
        self.dir, self.name, self.enabled = Path(directory), name, enabled
        self.budget_s, self.total = budget_s, total
        self.bar = self.writer = self.metrics = None
        self._last_time, self._last_step = time.perf_counter(), start
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        self.dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.dir / "tensorboard"))
        path = self.dir / "metrics.jsonl"
        torn = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115
        if torn:  # a run killed mid-line: end that line so the records after it stay parseable
            self.metrics.write("\n")
        unit_total = total if not budget_s else None
        self.bar = tqdm(total=unit_total, initial=start, desc=f"train {name}", unit="step", disable=not progress,
                        dynamic_ncols=True)

    def step(self, step: int, loss: float, lr: float, grad_norm: float, elapsed: float, *, images: int,
             log: bool) -> None:
        if not self.enabled:
            return
        self.bar.update(1)
        postfix = {"loss": f"{loss:.4f}"}
        if self.budget_s:
            postfix["left"] = f"{max(0.0, self.budget_s - elapsed) / 60:.1f}min"
        self.bar.set_postfix(postfix, refresh=False)
        if not log:
            return
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "steps_per_s": rate,
                  "images_per_s": rate * images, "elapsed_s": elapsed, "time": time.time()}
        for key in ("loss", "lr", "grad_norm", "steps_per_s", "images_per_s"):
            if math.isfinite(record[key]):
                self.writer.add_scalar(f"{self.name}/{key}", record[key], step)
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()

    def skipped(self, step: int, loss: float) -> None:
        if self.enabled:
            self.bar.write(f"train {self.name}: step {step} skipped, loss {loss} is not finite")
            self.metrics.write(json.dumps({"step": step, "skipped": True, "loss": str(loss)}) + "\n")

    def image(self, step: int, grid: Image.Image) -> Path | None:
        if not self.enabled:
            return None
        import io

        import numpy as np

        path = self.dir / "samples" / f"step-{step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        grid.save(buffer, format="PNG")
        atomic_write(path, buffer.getvalue())
        self.writer.add_image(f"{self.name}/samples", np.asarray(grid), step, dataformats="HWC")
        return path

    def close(self, reason: str, step: int) -> None:
        if not self.enabled:
            return
        self.bar.close()
        self.metrics.write(json.dumps({"step": step, "stopped": reason, "time": time.time()}) + "\n")
        self.metrics.close()
        self.writer.close()


def preview_batch(run: RunConfig, name: str) -> tuple[list[str], torch.Tensor | None]:
    """Held-out shapes prompts (and for SR stages their ground-truth low-res images) to preview a stage."""
    config = run.stages()[name]
    scenes = held_out_scenes(PREVIEW_PROMPTS - 2) + held_out_scenes(2, objects=2)
    captions = [s.caption for s in scenes]
    if not config.is_super_resolution:
        return captions, None
    images = torch.stack([to_tensor(render(s, config.resolution)) for s in scenes])
    return captions, downsample(images, config.lowres_resolution)


def preview_grid(sampler: Stage, batch, encoder, device) -> Image.Image:
    """Sample the preview prompts with `sampler` (a stage holding the EMA weights; its default settings)."""
    captions, lowres = batch
    sampler.to(device).eval()
    embeds, mask = encoder.encode(captions)
    images = sampler.sample(embeds.to(device, torch.float32), mask.to(device), generators(range(len(captions)), device),
                            lowres=None if lowres is None else lowres.to(device))
    return labelled_grid(to_pil(images), captions, columns=4)

