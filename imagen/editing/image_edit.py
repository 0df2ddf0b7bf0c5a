"""Editing a given image with the cascade: image-to-image (`img2img`), inpainting (`inpaint`), outpainting
(`outpaint`), and the super-resolution stages alone on a given image (`upscale`). One `ImageEdit` carries the
image (and mask) and is handed to `Imagen.run(request, edit=...)`, which calls it for every stage: the base stage
edits the image downsampled to its resolution; each SR stage edits the image at its own resolution, conditioned
as usual on the previous stage's (edited) output, so kept pixels stay the original's at every resolution.

    pipe.img2img("a large red circle at the center on a blue background", "in.png", strength=0.6, seed=1).images
    pipe.upscale("a large red circle at the center on a blue background", "small.png")     # SR stages alone
    pipe.inpaint("a small green square", "in.png", "mask.png", resample_steps=4)   # white = regenerate
    pipe.outpaint("... on a blue background", "in.png", (16, 0, 16, 0))           # extend left and right
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..options import IMG2IMG_STRENGTH, StageValue, per_stage
from ..output import ImagenOutput, check_output_type
from ..request import Request
from .images import ImageLike, check_same_size, load_image, load_mask, outpaint_canvas, resize_image, resize_mask
from .img2img import check_strength, noised_start, start_grid
from .inpaint import composite, known_region_denoise, resample


class ImageEdit:
    """Image-to-image from `image` at `strength` (one value, or {stage name: value}), and inpainting of the
    white part of `mask` when one is given, with `resample_steps` RePaint tries per step. What
    `Imagen.run(request, edit=...)` calls for each stage and batch (imagen.stage.StageEdit)."""

    def __init__(self, image: ImageLike, mask: ImageLike | None = None, strength: float | dict[str, float] = 1.0,
                 resample_steps: int = 1):
        self.image = load_image(image, "the image")
        self.mask = None if mask is None else load_mask(mask, "the mask")
        if self.mask is not None:
            check_same_size(self.image, self.mask, "the mask", "the image")
        strengths = strength.values() if isinstance(strength, dict) else [strength]
        for value in strengths:
            check_strength(value)
        if isinstance(resample_steps, bool) or not isinstance(resample_steps, int) or resample_steps < 1:
            raise ValueError(f"resample_steps must be an integer >= 1 (1 = no resampling), got {resample_steps!r}")
        self.strengths, self.resample_steps = strength, resample_steps
        self._resized: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def strength(self, name: str) -> float:
        return float(self.strengths[name] if isinstance(self.strengths, dict) else self.strengths)

    def at(self, size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image (1, 3, size, size) in [-1, 1] and mask (1, 1, size, size) of 0/1 (or None) at a resolution."""
        if size not in self._resized:
            mask = None if self.mask is None else resize_mask(self.mask, size)
            self._resized[size] = (resize_image(self.image, size), mask)
        return self._resized[size]

    def num_steps(self, name: str, stage, options) -> int:
        """Network evaluations of one batch of `stage` (for progress)."""
        steps = len(start_grid(stage.time_grid(options), self.strength(name)))
        steps -= 1
        return steps if self.mask is None or steps == 0 else (steps - 1) * self.resample_steps + 1

    def sample(self, name: str, stage, run, callback: Callable | None = None) -> torch.Tensor:
        """The edited images (B, 3, R, R) in [-1, 1] of one batch of `stage`, from its prepared `run`
        (imagen.stage.SamplingRun)."""
        image, mask = (None if v is None else v.to(run.x_T.device) for v in self.at(stage.resolution))
        grid = start_grid(run.timesteps, self.strength(name))
        if len(grid) == 1:  # strength 0: nothing to sample
            return image.expand_as(run.x_T).clone()
        # from the grid's own start, x_T itself: strength 1 is exactly plain sampling
        x = run.x_T if grid[0] >= run.timesteps[0] else noised_start(image, run.x_T, float(grid[0]), run.schedule)
        if mask is None:
            return run.run(x, grid, callback=callback)
        denoise = known_region_denoise(run.denoise, image, mask, run.schedule, run.generator)
        if self.resample_steps == 1:
            x0 = run.run(x, grid, denoise, callback=callback)
        else:
            x0 = resample(run.sampler, denoise, x, grid, schedule=run.schedule, resample_steps=self.resample_steps,
                          x0_fn=run.x0_fn, generator=run.generator, callback=callback)
        return composite(x0, image, mask)


def stage_strengths(pipe, request: Request, strength: StageValue, default: float) -> dict[str, float]:
    """{stage name: strength} for the stages of `request`: a per-stage value (imagen.options); a stage a mapping
    does not name keeps `default`, the method's own."""
    strengths = per_stage(strength, list(request.options), "strength", list(pipe.stages))
    return {name: check_strength(default if value is None else value) for name, value in strengths.items()}


def img2img(pipe, prompt: str | Sequence[str], image: ImageLike, strength: StageValue = IMG2IMG_STRENGTH, *,
            output_type: str = "pil", return_all_stages: bool = False, **kwargs: Any) -> ImagenOutput:
    """Variations of `image` (a path, PIL image or (3, H, W) tensor in [-1, 1]; square, any size) following
    the prompts: noised to `strength` in [0, 1] (a per-stage value) and denoised. Takes the arguments of
    `Imagen.__call__` and returns what it does."""
    check_output_type(output_type)
    request = pipe.request(prompt, **kwargs)
    strengths = stage_strengths(pipe, request, strength, IMG2IMG_STRENGTH)
    images = pipe.run(request, edit=ImageEdit(image, strength=strengths))
    return request.output(images, output_type, return_all_stages, {"edit": {"mode": "img2img", "strength": strengths}})


def inpaint(pipe, prompt: str | Sequence[str], image: ImageLike, mask: ImageLike, *, strength: StageValue = 1.0,
            resample_steps: int = 1, output_type: str = "pil", return_all_stages: bool = False,
            **kwargs: Any) -> ImagenOutput:
    """Regenerate the white part of `mask` (same size as `image`; black = keep) following the prompts,
    consistently with the kept part, which the result keeps exactly. `strength` < 1 starts the masked part
    from the noised original; `resample_steps` > 1 adds RePaint resampling (better blending, U times the
    steps). Takes the arguments of `Imagen.__call__` and returns what it does."""
    check_output_type(output_type)
    if mask is None:
        raise ValueError("inpaint needs a mask (white = regenerate); without one use img2img")
    request = pipe.request(prompt, **kwargs)
    strengths = stage_strengths(pipe, request, strength, 1.0)
    images = pipe.run(request, edit=ImageEdit(image, mask, strengths, resample_steps))
    settings = {"mode": "inpaint", "strength": strengths, "resample_steps": resample_steps}
    return request.output(images, output_type, return_all_stages, {"edit": settings})


def outpaint(pipe, prompt: str | Sequence[str], image: str | Path | Image.Image, margins: Sequence[int], *,
             resample_steps: int = 1, output_type: str = "pil", return_all_stages: bool = False,
             **kwargs: Any) -> ImagenOutput:
    """Extend `image` by `margins` = (left, top, right, bottom) pixels (the result must be square) and fill the
    new border following the prompts: inpainting of the border of a larger canvas."""
    check_output_type(output_type)
    if len(margins) != 4:
        raise ValueError(f"margins must be (left, top, right, bottom), got {tuple(margins)}")
    canvas, mask = outpaint_canvas(image, *margins)
    request = pipe.request(prompt, **kwargs)
    images = pipe.run(request, edit=ImageEdit(canvas, mask, 1.0, resample_steps))
    settings = {"mode": "outpaint", "outpaint": list(margins), "resample_steps": resample_steps}
    return request.output(images, output_type, return_all_stages, {"edit": settings})


def upscale(pipe, prompt: str | Sequence[str], image: ImageLike | Sequence[ImageLike], *,
            output_type: str = "pil", return_all_stages: bool = False, **kwargs: Any) -> ImagenOutput:
    """The super-resolution stages alone on a given image: `image` (a path, PIL image or (3, H, W) tensor in
    [-1, 1], square; or one per prompt) stands for the base stage's output, resized (with a warning) to the
    first SR stage's input size, and each prompt describes it. Per-stage options count the SR stages run only.
    Takes the arguments of `Imagen.__call__` and returns what it does."""
    check_output_type(output_type)
    sr_names = [n for n, stage in pipe.stages.items() if stage.config.is_super_resolution]
    if not sr_names:
        raise ValueError("this model has no super-resolution stage to upscale with")
    if "options" not in kwargs:
        kwargs.setdefault("start_at_stage", sr_names[0])
    request = pipe.request(prompt, **kwargs)
    first = list(request.options)[0]
    if not pipe.stages[first].config.is_super_resolution:
        raise ValueError(f"an upscale runs the super-resolution stages only, but this one starts at {first}")
    sources = list(image) if isinstance(image, (list, tuple)) else [image]
    if len(sources) not in (1, len(request.prompts)):
        raise ValueError(f"got {len(sources)} images for {len(request.prompts)} images to make: give one image, "
                         "or one per image")
    size = pipe.stages[first].config.lowres_resolution
    loaded = [load_image(source, "the image to upscale") for source in sources]
    for tensor in loaded:
        if tensor.shape[-1] != size:
            warnings.warn(f"resizing the {tensor.shape[-1]}x{tensor.shape[-2]} image to {size}x{size}, the input "
                          f"size of the first super-resolution stage ({first})", stacklevel=3)
    start = torch.cat([resize_image(tensor, size) for tensor in loaded])
    start = start.expand(len(request.prompts), -1, -1, -1) if len(loaded) == 1 else start
    return request.output(pipe.run(request, start=start), output_type, return_all_stages,
                          {"edit": {"mode": "upscale"}})
