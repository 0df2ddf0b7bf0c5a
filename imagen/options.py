"""How each stage of a run samples: `SamplingOptions`, resolved once where a call comes in (the CLI, the library
call, a stage's configured defaults) and passed down unchanged to the stages, samplers and editing modes.

A per-stage value, wherever one is accepted, is one of: `None` (each stage's configured default), a single value
for every stage, a sequence with one value per stage run (in cascade order), or a `{stage name: value}` mapping
(stages it does not name keep their default). Nothing is guessed from a sequence's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from configs import SAMPLER_NAMES, THRESHOLDING_MODES, TIME_GRID_NAMES, StageConfig

IMG2IMG_STRENGTH = 0.6  # img2img's default: the layout kept, the rest redrawn
MAX_STEPS = 10_000  # sampling steps per stage, ten times DDPM's 1,000: a bound before the time grid fills memory

StageValue = Any  # None, one value, a sequence with one per stage run, or {stage name: value}


@dataclass(frozen=True)
class SamplingOptions:
    """How one stage samples. `None` fields mean "the stage's configured default" until `resolved`."""

    guidance_scale: float | Callable | None = None  # a number, or a function of t (B,) -> (B,)
    num_steps: int | None = None
    sampler: str | None = None
    thresholding: str | None = None
    dynamic_percentile: float | None = None
    aug_level: float | None = None  # super-resolution stages only
    time_grid: str | None = None

    def resolved(self, config: StageConfig) -> SamplingOptions:
        """Every `None` replaced by the stage's configured default (aug_level stays None for a base stage), every
        value checked; ValueError naming the first bad one."""
        defaults, aug = config.sampler, config.noise_aug
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return SamplingOptions(
            guidance_scale=pick(self.guidance_scale, defaults.guidance_scale),
            num_steps=pick(self.num_steps, defaults.num_steps),
            sampler=pick(self.sampler, defaults.name),
            thresholding=pick(self.thresholding, defaults.thresholding),
            dynamic_percentile=pick(self.dynamic_percentile, defaults.dynamic_percentile),
            aug_level=pick(self.aug_level, aug.sample_level) if config.is_super_resolution else None,
            time_grid=pick(self.time_grid, defaults.time_grid)).checked()

    def checked(self) -> SamplingOptions:
        """These options, after checking every value that is set; ValueError naming the first bad one."""
        for value, valid, what in ((self.sampler, SAMPLER_NAMES, "sampler"),
                                   (self.thresholding, THRESHOLDING_MODES, "thresholding"),
                                   (self.time_grid, TIME_GRID_NAMES, "time grid")):
            if value is not None and value not in valid:
                raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
        steps = self.num_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS):
            raise ValueError(f"number of sampling steps must be an integer from 1 to {MAX_STEPS:,}, got {steps!r}")
        if self.dynamic_percentile is not None and not 0.0 < self.dynamic_percentile <= 1.0:
            raise ValueError(f"dynamic thresholding percentile must be in (0, 1], got {self.dynamic_percentile}")
        if self.aug_level is not None and not 0.0 <= self.aug_level <= 1.0:
            raise ValueError(f"augmentation level must be in [0, 1], got {self.aug_level}")
        scale = self.guidance_scale
        if scale is not None and not callable(scale) and not (
                isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)):
            raise ValueError(f"guidance scale must be a finite number (or a function of t), got {scale!r}")
        return self

    @property
    def is_resolved(self) -> bool:
        return all(getattr(self, f.name) is not None for f in fields(self) if f.name != "aug_level")

    def as_dict(self) -> dict:
        """JSON-able settings (a guidance schedule over t is recorded as its name)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if callable(self.guidance_scale):
            out["guidance_scale"] = getattr(self.guidance_scale, "__name__", "schedule")
        return out


StageOptions = dict[str, SamplingOptions]  # {stage name: resolved options}, the stages of a run in cascade order


def per_stage(value: StageValue, names: Sequence[str], what: str, known: Sequence[str] = ()) -> dict[str, Any]:
    """{name: its value} for the stages `names` of a run (see the module docstring). `known`: every stage name of
    the model, which a mapping may also name (stages outside the run are then ignored)."""
    names = list(names)
    if getattr(value, "ndim", None) == 0:  # a NumPy or torch scalar: the number it holds
        value = value.item()
    if value is None or isinstance(value, (str, int, float)) or callable(value):
        return {name: value for name in names}
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names and k not in known]
        if unknown:
            raise ValueError(f"{what}: {unknown[0]!r} is not a stage of this run ({', '.join(names)})")
        return {name: value.get(name) for name in names}
    values = list(value)
    if len(values) == 1:
        return {name: values[0] for name in names}
    if len(values) != len(names):
        raise ValueError(f"{what} has {len(values)} values but this call runs {len(names)} stage(s) "
                         f"({', '.join(names) or 'none'}): give one value, one per stage run, or a "
                         "{stage: value} mapping")
    return dict(zip(names, values, strict=True))
