"""Seeded Gaussian noise. A list of generators gives each sample its own stream, so a sample does not
depend on the batch it is drawn in (the pipeline's per-image seeds rely on this). Besides torch generators,
the per-sample entries may be any noise source with `randn(shape, device=, dtype=)` (the interpolation mode's
slerped noise, imagen.editing.interpolation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Generator = torch.Generator | Sequence[torch.Generator] | None


def randn(shape: Sequence[int], generator: Generator = None, *, device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape`; `generator` is one generator or one per sample (shape[0])."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype)
                        if isinstance(g, torch.Generator) else g.randn(tuple(shape[1:]), device=device, dtype=dtype)
                        for g in generator])


MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1  # torch takes -2**63 to 2**64 - 1: room for the offsets images and stages add


def check_seed(seed: Any, name: str = "seed") -> int:
    """`seed` if it is an integer from MIN_SEED to MAX_SEED; ValueError naming `name` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{name} must be an integer, got {seed!r}")
    if not MIN_SEED <= seed <= MAX_SEED:
        raise ValueError(f"{name} {seed} is out of range: give an integer from -2**63 to 2**63 - 1")
    return seed


def generators(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per seed."""
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]
