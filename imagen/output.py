"""What a pipeline call returns: `ImagenOutput`, with the final images in the caller's format and, on request,
every stage's. PIL images carry their prompt and settings in `.info` (the text chunks PNG files get)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import to_pil

OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass(frozen=True)
class ImagenOutput:
    """`images`: the last stage's images, as `output_type` asked: a list of PIL images ("pil"), a float array
    (N, H, W, 3) in [0, 1] ("np") or a tensor (N, 3, H, W) in [0, 1] ("pt"), as diffusers returns them.
    `stage_images`: {stage name: that stage's images, same format} with `return_all_stages=True`, else None.
    `seeds`: the seed each image was drawn with (re-run one alone with `seed=`); `settings`: per image, what made
    it (model, prompt, seed, every stage's options), the JSON in the PIL images' `.info["settings"]`."""

    images: Any
    seeds: list
    settings: list[dict]
    stage_images: dict[str, Any] | None = None


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")


def convert(images: torch.Tensor, output_type: str, settings: list[dict] | None = None) -> Any:
    """(N, 3, H, W) in [-1, 1] -> the `output_type` format; PIL images get `settings[i]` (and its prompt) in
    `.info`."""
    if output_type == "pt":
        return (images.detach().float().clamp(-1, 1) + 1) / 2
    if output_type == "np":
        return ((images.detach().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
    pils = to_pil(images)
    for image, record in zip(pils, settings or [{}] * len(pils), strict=True):
        annotate(image, record)
    return pils


def annotate(image: Image.Image, settings: dict) -> Image.Image:
    """Put `settings` (and its "prompt") into `image.info`, where PNG writing finds them."""
    if settings:
        image.info["prompt"] = str(settings.get("prompt", ""))
        image.info["settings"] = json.dumps(settings, sort_keys=True)
    return image
