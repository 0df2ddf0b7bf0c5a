"""Samplers: stateless functions with one shared signature, one file each, in an explicit registry.

    sample(denoise, x_T, timesteps, *, schedule, x0_fn=None, generator=None, callback=None) -> x0

`denoise(x_t, t) -> x0` is a (guided) denoiser; `timesteps` a decreasing grid from 1 to 0 (see
`timesteps.time_grid`); `x0_fn` a thresholding function; the result is the final x0 prediction.
Sampler-specific options (DDIM's `eta`, DPM-Solver++'s `order`) are extra keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from configs import SamplerConfig

from . import ddim, ddpm, dpm_solver
from .timesteps import TIME_GRIDS, time_grid

SAMPLERS: dict[str, Callable] = {  # keys: configs.SAMPLER_NAMES
    "ddpm": ddpm.sample,
    "ddim": ddim.sample,
    "dpm++": dpm_solver.sample,
}


def get_sampler(name: str, *, eta: float = 0.0, order: int = 2) -> Callable:
    """The sampler `name` with its own options bound (`eta` for ddim, `order` for dpm++)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    if name == "ddim":
        return partial(ddim.sample, eta=eta)
    if name == "dpm++":
        return partial(dpm_solver.sample, order=order)
    return SAMPLERS[name]


def sampler_from_config(config: SamplerConfig) -> Callable:
    return get_sampler(config.name, eta=config.eta, order=config.order)


__all__ = ["SAMPLERS", "TIME_GRIDS", "get_sampler", "sampler_from_config", "time_grid"]
