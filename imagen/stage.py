"""One stage of the cascade: an Efficient U-Net with its schedule and parameterisation, its training loss
and its sampler. The base stage maps text to 64 px; an SR stage also reads an upsampled, noise-augmented
low-res image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from configs import StageConfig
from unets import EfficientUNet

from .augmentation import fixed_levels, noise_augment, training_levels
from .denoiser import Condition, Denoiser
from .guidance import guided
from .noise import Generator, randn
from .objective import batch_scale, input_scale, per_sample_loss, q_sample
from .options import SamplingOptions
from .resize import upsample
from .samplers import get_sampler, time_grid
from .schedules import Schedule
from .thresholding import make_x0_fn


@dataclass(frozen=True)
class TrainingNoise:
    """The random draws of one training batch: t (B,), eps (B, 3, R, R), drop_text (B,) bool, and for SR
    stages aug_level (B,) and aug_eps (B, 3, R, R)."""

    t: torch.Tensor
    eps: torch.Tensor
    drop_text: torch.Tensor
    aug_level: torch.Tensor | None = None
    aug_eps: torch.Tensor | None = None

    def rows(self, rows: slice) -> TrainingNoise:
        return TrainingNoise(*(None if v is None else v[rows] for v in
                               (self.t, self.eps, self.drop_text, self.aug_level, self.aug_eps)))


def draw_training_noise(config: StageConfig, batch: int, size: int, generator: torch.Generator,
                        device: str | torch.device = "cpu") -> TrainingNoise:
    """All random draws for a batch of `batch` images of `size` px, from `generator`: t ~ U(0, 1),
    eps ~ N(0, I), caption drop with probability train.caption_drop_prob, and (SR) augmentation levels
    a ~ U(0, noise_aug.train_max_level) with their noise."""
    shape = (batch, 3, size, size)
    t = torch.rand(batch, generator=generator, device=device)
    eps = torch.randn(shape, generator=generator, device=device)
    drop = torch.rand(batch, generator=generator, device=device) < config.train.caption_drop_prob
    if not config.is_super_resolution:
        return TrainingNoise(t, eps, drop)
    level = training_levels(batch, config.noise_aug.train_max_level, generator, device)
    return TrainingNoise(t, eps, drop, level, torch.randn(shape, generator=generator, device=device))


class Stage(nn.Module):
    """`net` (the U-Net), `schedule`, `denoiser`; `config` is the stage's `StageConfig`."""

    def __init__(self, config: StageConfig, text_dim: int):
        super().__init__()
        self.config = config
        self.net = EfficientUNet(config.unet, text_dim=text_dim, lowres_cond=config.is_super_resolution)
        if config.is_super_resolution:
            # NHWC weights let oneDNN skip layout reorders around the many narrow convolutions at 256-1024 px:
            # SR sampling 1.1-1.5x faster on CPU, training unchanged (bench/mfu.py --levers); the base stage at
            # 64 px is not faster, so it stays NCHW
            self.net.to(memory_format=torch.channels_last)
        self.schedule = Schedule(config.schedule)
        self.denoiser = Denoiser(self.net, self.schedule, config.objective.prediction, config.objective.sigma_data)

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def time_grid(self, options: SamplingOptions) -> torch.Tensor:
        """The decreasing sampling times of `options` (resolved) for this stage's schedule and prediction."""
        return time_grid(options.time_grid, options.num_steps, self.schedule, self.config.objective.prediction)

    def training_loss(self, images: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None,
                      noise: TrainingNoise, lowres: torch.Tensor | None = None,
                      pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample diffusion loss, shape (B,). images (B, 3, R, R) in [-1, 1]; lowres (B, 3, r, r) for SR
        stages (the matching crop when R is a crop); `noise` from `draw_training_noise` (all the randomness,
        so a step is a pure function of its inputs: exact resume, and equal gradients however a global batch
        is split over processes); `pixel_weight` (B, 1, R, R): the loss masks' weights (`per_sample_loss`)."""
        condition = Condition(text_embeds=text_embeds, text_mask=text_mask, drop_text=noise.drop_text)
        x0 = images
        if self.config.is_super_resolution:
            if lowres is None:
                raise ValueError("an SR stage needs the low-res images to train")
            upsampled = upsample(lowres, images.shape[-1])
            aug = noise_augment(upsampled, noise.aug_level, self.schedule, noise.aug_eps)
            condition = Condition(text_embeds, text_mask, noise.drop_text, aug, noise.aug_level)
            if self.config.objective.lowres_residual:
                x0 = images - upsampled
        log_snr = self.schedule.log_snr(noise.t)
        alpha, sigma = self.schedule.alpha_sigma(noise.t)
        x_t = q_sample(x0, alpha, sigma, noise.eps)
        objective = self.config.objective
        c_in = input_scale(objective.prediction, alpha, sigma, objective.sigma_data)
        output = self.net(batch_scale(c_in, x_t) * x_t, noise.t, **condition.as_kwargs())
        return per_sample_loss(objective, output, x0, noise.eps, alpha, sigma, log_snr, pixel_weight)

    def forward(self, images: torch.Tensor, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None,
                noise: TrainingNoise, lowres: torch.Tensor | None = None,
                pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The training loss (so a wrapped stage, e.g. DistributedDataParallel, trains through forward)."""
        return self.training_loss(images, text_embeds, text_mask, noise, lowres, pixel_weight)

    @torch.no_grad()
    def sample(self, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None, generator: Generator,
               options: SamplingOptions | None = None, lowres: torch.Tensor | None = None,
               negative: tuple[torch.Tensor, torch.Tensor] | None = None,
               callback: Callable | None = None) -> torch.Tensor:
        """Images (B, 3, R, R) in [-1, 1]. `generator` is one per image (batch-independent results) or one
        for the batch; `options` unset fields take the stage's defaults; `lowres` (B, 3, r, r) is the previous
        stage's output (SR stages); `negative` the (embeds, mask) of a negative prompt, replacing the null
        condition in guidance."""
        options = (options or SamplingOptions()).resolved(self.config)
        run = self.prepare(text_embeds, text_mask, generator, options, lowres, negative)
        return run.run(callback=callback)

    @torch.no_grad()
    def prepare(self, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None, generator: Generator,
                options: SamplingOptions, lowres: torch.Tensor | None = None,
                negative: tuple[torch.Tensor, torch.Tensor] | None = None) -> SamplingRun:
        """Everything `sample` does before the sampler runs, as a `SamplingRun` (arguments as for `sample`,
        `options` resolved: `SamplingOptions.resolved`): the editing modes (imagen.editing) change where it
        starts and what the denoiser sees, then run it. The noise is drawn in the same order as `sample` draws
        it: x_T first, then the SR augmentation noise."""
        if not options.is_resolved:
            raise ValueError("Stage.prepare takes resolved options: options.resolved(stage.config)")
        defaults = self.config.sampler
        batch = text_embeds.shape[0] if text_embeds is not None else lowres.shape[0]
        device = next(self.net.parameters()).device
        size = self.resolution
        x_T = randn((batch, 3, size, size), generator, device=device)
        condition = Condition(text_embeds=text_embeds, text_mask=text_mask)
        if self.config.is_super_resolution:
            if lowres is None:
                raise ValueError(f"the {size} px SR stage needs the previous stage's images")
            level = fixed_levels(batch, options.aug_level, device)
            eps = randn((batch, 3, size, size), generator, device=device)
            upsampled = upsample(lowres.to(device), size)
            aug = noise_augment(upsampled, level, self.schedule, eps)
            anchor = upsampled if self.config.objective.lowres_residual else None
            condition = Condition(text_embeds, text_mask, None, aug, level, anchor)
        negative_condition = None
        if negative is not None:
            negative_condition = replace(condition, text_embeds=negative[0], text_mask=negative[1])
        return SamplingRun(
            denoise=guided(self.denoiser, condition, options.guidance_scale, negative_condition),
            sampler=get_sampler(options.sampler, eta=defaults.eta, order=defaults.order),
            timesteps=self.time_grid(options),
            x_T=x_T, x0_fn=make_x0_fn(options.thresholding, options.dynamic_percentile), schedule=self.schedule,
            generator=generator)


@dataclass(frozen=True)
class SamplingRun:
    """One stage's sampling, set up and ready to run (`Stage.prepare`): the guided `denoise(x_t, t) -> x0`,
    the sampler with its options bound, the decreasing time grid, the initial noise x_T (B, 3, R, R), the
    thresholding `x0_fn`, the schedule and the generator(s) the sampler draws from."""

    denoise: Callable
    sampler: Callable
    timesteps: torch.Tensor
    x_T: torch.Tensor
    x0_fn: Callable | None
    schedule: Schedule
    generator: Generator

    def run(self, x: torch.Tensor | None = None, timesteps: torch.Tensor | None = None,
            denoise: Callable | None = None, callback: Callable | None = None) -> torch.Tensor:
        """Images (B, 3, R, R) clamped to [-1, 1], sampled from `x` (default x_T) along `timesteps` (default the
        whole grid; a grid starting below t = 1 continues from a partly noised x) with `denoise` (default the
        guided denoiser; the editing modes wrap it)."""
        images = self.sampler(self.denoise if denoise is None else denoise, self.x_T if x is None else x,
                              self.timesteps if timesteps is None else timesteps, schedule=self.schedule,
                              x0_fn=self.x0_fn, generator=self.generator, callback=callback)
        return images.clamp(-1.0, 1.0)


class StageEdit(Protocol):
    """What an image edit (imagen.editing.image_edit.ImageEdit) does for each stage of a run: how many network
    evaluations a batch of the stage takes (for progress), and the batch's edited images from its prepared run."""

    def num_steps(self, name: str, stage: Stage, options: SamplingOptions) -> int: ...

    def sample(self, name: str, stage: Stage, run: SamplingRun, callback: Callable | None = None) -> torch.Tensor: ...
