"""Editing a given image with every stage of the cascade: image-to-image (`img2img`), inpainting (`inpaint`)
and outpainting (`outpaint`). One `ImageEdit` carries the image (and mask) and is handed to
`Imagen.generate(edit=...)`, which calls it for every stage: the base stage edits the image downsampled to its
resolution; each SR stage edits the image at its own resolution, conditioned as usual on the previous stage's
(edited) output, so kept pixels stay the original's at every resolution.

    pipe.img2img("a large red circle at the center on a blue background", "in.png", strength=0.6, seed=1)
    pipe.inpaint("a small green square", "in.png", "mask.png", resample_steps=4)   # white = regenerate
    pipe.outpaint("... on a blue background", "in.png", (16, 0, 16, 0))           # extend left and right
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..samplers import time_grid
from .images import ImageLike, check_same_size, load_image, load_mask, outpaint_canvas, resize_image, resize_mask
from .img2img import check_strength, noised_start, start_grid
from .inpaint import composite, known_region_denoise, resample


class ImageEdit:
    """Image-to-image from `image` at `strength` (one value, or {stage name: value}), and inpainting of the
    white part of `mask` when one is given, with `resample_steps` RePaint tries per step. What
    `Imagen.generate(edit=...)` calls for each stage and batch (`num_steps`, `sample`)."""

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
        steps = len(start_grid(time_grid(options.time_grid, options.num_steps, stage.schedule), self.strength(name)))
        steps -= 1
        return steps if self.mask is None or steps == 0 else (steps - 1) * self.resample_steps + 1

    def sample(self, name: str, stage, run, rows: slice, callback=None) -> torch.Tensor:
        """The edited images (B, 3, R, R) in [-1, 1] of one batch of `stage`, from its prepared `run`
        (imagen.stage.SamplingRun)."""
        image, mask = (None if v is None else v.to(run.x_T.device) for v in self.at(stage.resolution))
        grid = start_grid(run.timesteps, self.strength(name))
        if len(grid) == 1:  # strength 0: nothing to sample
            return image.expand_as(run.x_T).clone()
        x = noised_start(image, run.x_T, float(grid[0]), run.schedule)
        if mask is None:
            return run.run(x, grid, callback=callback)
        denoise = known_region_denoise(run.denoise, image, mask, run.schedule, run.generator)
        if self.resample_steps == 1:
            x0 = run.run(x, grid, denoise, callback=callback)
        else:
            x0 = resample(run.sampler, denoise, x, grid, schedule=run.schedule, resample_steps=self.resample_steps,
                          x0_fn=run.x0_fn, generator=run.generator, callback=callback)
        return composite(x0, image, mask)


def stage_strengths(pipe, strength: float | Sequence[float], stop_at_stage: int | str | None = None
                    ) -> dict[str, float]:
    """{stage name: strength} for the stages a run makes: one value for all, or one per stage (of the model
    or of the run), as every per-stage option."""
    from ..pipeline import _per_stage

    names = list(pipe.sampling_options(stop_at_stage=stop_at_stage))
    return {name: _per_stage(strength, (list(pipe.stages), names), name, "strength") for name in names}


def _final(pipe, outputs: dict[str, torch.Tensor], output_type: str) -> list[Image.Image] | torch.Tensor:
    from ..images import to_pil

    final = list(outputs.values())[-1]
    return to_pil(final) if output_type == "pil" else final


def _check_output_type(output_type: str) -> None:
    if output_type not in ("pil", "tensor"):
        raise ValueError(f"output_type must be 'pil' or 'tensor', got {output_type!r}")


def img2img(pipe, prompts: str | Sequence[str], image: ImageLike, strength: float | Sequence[float] = 0.6, *,
            output_type: str = "pil", **kwargs: Any) -> list[Image.Image] | torch.Tensor:
    """Variations of `image` (a path, PIL image or (3, H, W) tensor in [-1, 1]; square, any size) following
    the prompts: noised to `strength` in [0, 1] (one value, or one per stage) and denoised. Takes the arguments
    of `Imagen.generate`; returns what `Imagen.__call__` does (final stage, PIL or tensor)."""
    _check_output_type(output_type)
    edit = ImageEdit(image, strength=stage_strengths(pipe, strength, kwargs.get("stop_at_stage")))
    return _final(pipe, pipe.generate(prompts, edit=edit, **kwargs), output_type)


def inpaint(pipe, prompts: str | Sequence[str], image: ImageLike, mask: ImageLike, *,
            strength: float | Sequence[float] = 1.0, resample_steps: int = 1, output_type: str = "pil",
            **kwargs: Any) -> list[Image.Image] | torch.Tensor:
    """Regenerate the white part of `mask` (same size as `image`; black = keep) following the prompts,
    consistently with the kept part, which the result keeps exactly. `strength` < 1 starts the masked part
    from the noised original; `resample_steps` > 1 adds RePaint resampling (better blending, U times the
    steps). Takes the arguments of `Imagen.generate`; returns what `Imagen.__call__` does."""
    _check_output_type(output_type)
    edit = ImageEdit(image, mask, stage_strengths(pipe, strength, kwargs.get("stop_at_stage")), resample_steps)
    return _final(pipe, pipe.generate(prompts, edit=edit, **kwargs), output_type)


def outpaint(pipe, prompts: str | Sequence[str], image: str | Path | Image.Image, margins: Sequence[int], *,
             resample_steps: int = 1, output_type: str = "pil", **kwargs: Any) -> list[Image.Image] | torch.Tensor:
    """Extend `image` by `margins` = (left, top, right, bottom) pixels (the result must be square) and fill the
    new border following the prompts: inpainting of the border of a larger canvas."""
    if len(margins) != 4:
        raise ValueError(f"margins must be (left, top, right, bottom), got {tuple(margins)}")
    canvas, mask = outpaint_canvas(image, *margins)
    return inpaint(pipe, prompts, canvas, mask, resample_steps=resample_steps, output_type=output_type, **kwargs)
