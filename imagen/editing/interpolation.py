"""Interpolation between two prompts and/or two seeds (DALL·E 2 section 3.2; Imagen's slerp of latents).

Frame k of N has weight u = k / (N - 1). Every noise draw of a stage (x_T, the SR augmentation noise, a
stochastic sampler's step noise) is the spherical interpolation slerp(draw of seed A, draw of seed B, u), so
each stays a plausible Gaussian sample; the text condition is the linear interpolation of the two prompts'
token embeddings (padded to one length, masks OR-ed). The first frame is exactly the plain sample of prompt A
at seed A, the last of prompt B at seed B.

    frames = pipe.interpolate("a red circle ...", "a green square ...", seed=0, to_seed=1, frames=8).images
    write strip(frames) as PNG, gif_bytes(frames) as an animated GIF
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image

from ..noise import check_seed
from ..output import ImagenOutput, check_output_type
from .conditioning import lerp_text, one_image_per_condition, sample_texts


def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """Spherical interpolation of two tensors seen as vectors: a at u = 0, b at u = 1 (exactly), along the
    great circle in between (linear when they are nearly parallel)."""
    if u == 0.0:
        return a
    if u == 1.0:
        return b
    a64, b64 = a.double(), b.double()
    cos = (a64 * b64).sum() / (a64.norm() * b64.norm()).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(theta) < 1e-4:
        return torch.lerp(a, b, u)
    out = (torch.sin((1 - u) * theta) * a64 + torch.sin(u * theta) * b64) / torch.sin(theta)
    return out.to(a.dtype)


class SlerpNoise:
    """A per-image noise source (imagen.noise.randn) that draws the same shape from two generators and returns
    their slerp at weight u."""

    def __init__(self, generator_a: torch.Generator, generator_b: torch.Generator, u: float):
        self.generator_a, self.generator_b, self.u = generator_a, generator_b, u

    def randn(self, shape: Sequence[int], *, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        a = torch.randn(tuple(shape), generator=self.generator_a, device=device, dtype=dtype)
        b = torch.randn(tuple(shape), generator=self.generator_b, device=device, dtype=dtype)
        return slerp(a, b, self.u)


@dataclass(frozen=True)
class SlerpSeeds:
    """The seed of one interpolated image, for `Imagen.generate_from_embeddings(seeds=...)`: every stage's
    noise is slerp(noise of seed_a, noise of seed_b, u)."""

    seed_a: int
    seed_b: int
    u: float

    def generator(self, offset: int, device: str | torch.device) -> torch.Generator | SlerpNoise:
        if self.seed_a == self.seed_b or self.u in (0.0, 1.0):
            return torch.Generator(device).manual_seed((self.seed_b if self.u == 1.0 else self.seed_a) + offset)
        return SlerpNoise(torch.Generator(device).manual_seed(self.seed_a + offset),
                          torch.Generator(device).manual_seed(self.seed_b + offset), self.u)


def weights(frames: int) -> list[float]:
    """The N interpolation weights 0, 1/(N-1), ..., 1."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an integer >= 2 (the two ends included), got {frames!r}")
    return [k / (frames - 1) for k in range(frames)]


def interpolate(pipe, prompt: str, to_prompt: str | None = None, *, seed: int = 0, to_seed: int | None = None,
                frames: int = 8, output_type: str = "pil", return_all_stages: bool = False,
                **kwargs: Any) -> ImagenOutput:
    """`frames` images from (prompt, seed) to (to_prompt, to_seed) (each defaults to its start: interpolate
    prompts at one seed, or seeds for one prompt). `kwargs`: those of `Imagen.request` (negative_prompt,
    max_batch_size, progress and the per-stage options). Returns an `ImagenOutput` of the frames; the first and
    last are the plain samples of each end."""
    check_output_type(output_type)
    to_prompt = prompt if to_prompt is None else to_prompt
    to_seed = seed if to_seed is None else to_seed
    for text in (prompt, to_prompt):
        if not isinstance(text, str) or not text.strip():
            raise ValueError("interpolation prompts must be non-empty strings")
    seed, to_seed = check_seed(seed), check_seed(to_seed, "to_seed")
    us = weights(frames)
    labels = [prompt if u == 0 else to_prompt if u == 1 else f"{prompt} -> {to_prompt} (u={u:.3f})" for u in us]
    request = pipe.request([prompt if u < 1 else to_prompt for u in us], seed=seed,
                           **one_image_per_condition(kwargs, "interpolation"))
    request = replace(request, prompts=labels, seeds=[SlerpSeeds(seed, to_seed, u) for u in us])
    start, end = pipe.encode_prompts([prompt]), pipe.encode_prompts([to_prompt])
    outputs = sample_texts(pipe, request, [lerp_text(start, end, u) for u in us], alone=[u in (0.0, 1.0) for u in us])
    extras = [{"seed": seed if u < 1 else to_seed, "interpolation": {
        "from": {"prompt": prompt, "seed": seed}, "to": {"prompt": to_prompt, "seed": to_seed}, "u": u, "frame": k}}
        for k, u in enumerate(us)]
    return request.output(outputs, output_type, return_all_stages, extras)


def strip(images: Sequence[Image.Image], gap: int = 0) -> Image.Image:
    """The images side by side, left to right (`gap` white pixels between)."""
    if not images:
        raise ValueError("no images for a strip")
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(i.height for i in images)), "white")
    x = 0
    for image in images:
        out.paste(image.convert("RGB"), (x, 0))
        x += image.width + gap
    return out


def gif_bytes(images: Sequence[Image.Image], duration_ms: int = 150, bounce: bool = True) -> bytes:
    """An endlessly looping animated GIF of the frames (`bounce`: forth then back)."""
    if not images:
        raise ValueError("no images for a GIF")
    if duration_ms < 1:
        raise ValueError(f"frame duration must be >= 1 ms, got {duration_ms}")
    sequence = [i.convert("RGB") for i in images]
    if bounce and len(sequence) > 2:
        sequence += sequence[-2:0:-1]
    buffer = io.BytesIO()
    sequence[0].save(buffer, "GIF", save_all=True, append_images=sequence[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()
