import inspect

import pytest
import torch

from configs import SAMPLER_NAMES, SamplerConfig
from imagen.samplers import SAMPLERS, get_sampler, sampler_from_config, time_grid
from imagen.samplers.timesteps import LOGSNR_END, LOGSNR_START
from imagen.schedules import Schedule


def test_registry_matches_the_config_choices():
    assert tuple(SAMPLERS) == SAMPLER_NAMES


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_has_the_shared_signature(name):
    params = inspect.signature(SAMPLERS[name]).parameters
    assert list(params)[:3] == ["denoise", "x_T", "timesteps"]
    for keyword in ("schedule", "x0_fn", "generator", "callback"):
        assert params[keyword].kind is inspect.Parameter.KEYWORD_ONLY


def test_unknown_sampler_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown sampler 'euler'; valid: ddpm, ddim, dpm\\+\\+"):
        get_sampler("euler")


def test_sampler_from_config_binds_options():
    assert sampler_from_config(SamplerConfig(name="ddim", eta=0.3)).keywords == {"eta": 0.3}
    assert sampler_from_config(SamplerConfig(name="dpm++", order=3)).keywords == {"order": 3}


@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
def test_time_grids_decrease_from_one_to_zero(kind):
    grid = time_grid(kind, 12, Schedule())
    assert len(grid) == 13 and grid[0] == 1.0 and grid[-1] == 0.0
    assert bool((grid[1:] < grid[:-1]).all())


def test_logsnr_grid_is_uniform_in_log_snr_between_its_ends():
    schedule = Schedule()
    grid = time_grid("logsnr", 10, schedule)
    assert grid[-1] == 0.0
    log_snr = schedule.log_snr(grid[1:-1])
    steps = log_snr[1:] - log_snr[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, (LOGSNR_END - LOGSNR_START) / 9), atol=1e-6, rtol=0)
    assert log_snr[-1].item() == pytest.approx(LOGSNR_END)


def test_bad_grids_are_rejected():
    with pytest.raises(ValueError, match="number of sampling steps must be >= 1"):
        time_grid("uniform", 0, Schedule())
    with pytest.raises(ValueError, match="unknown time grid 'cubic'"):
        time_grid("cubic", 5, Schedule())
    with pytest.raises(ValueError, match="strictly decreasing"):
        get_sampler("ddim")(lambda x, t: x, torch.zeros(1, 2), torch.tensor([0.0, 1.0]), schedule=Schedule())


@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
@pytest.mark.parametrize("steps", [1, 2, 10, 50])
def test_grids_of_the_linear_schedule_decrease_strictly(kind, steps):
    from configs import ScheduleConfig

    grid = time_grid(kind, steps, Schedule(ScheduleConfig(kind="linear")))
    assert len(grid) == steps + 1 and grid[0] == 1.0 and grid[-1] == 0.0
    assert bool((grid[1:] < grid[:-1]).all())


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
def test_every_sampler_and_grid_samples_a_linear_schedule_stage(name, kind):
    from configs import ScheduleConfig

    schedule = Schedule(ScheduleConfig(kind="linear"))
    x0 = torch.full((2, 3, 4, 4), 0.3)
    denoise = lambda x, t: x0  # noqa: E731  (an exact denoiser for data that is always x0)
    out = get_sampler(name)(denoise, torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)),
                            time_grid(kind, 8, schedule), schedule=schedule,
                            generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


@pytest.mark.parametrize("kind", ["uniform", "logsnr", "karras"])
@pytest.mark.parametrize("schedule_kind", ["cosine", "linear"])
def test_eps_grids_draw_x_T_at_log_snr_minus_8(kind, schedule_kind):
    from configs import ScheduleConfig
    from imagen.samplers.timesteps import LOGSNR_START

    schedule = Schedule(ScheduleConfig(kind=schedule_kind))
    grid = time_grid(kind, 12, schedule, "eps")
    assert schedule.log_snr(grid[:1]).item() == pytest.approx(LOGSNR_START, abs=1e-6)
    assert len(grid) == 13 and grid[-1] == 0.0 and bool((grid[1:] < grid[:-1]).all())
    assert time_grid(kind, 12, schedule, "v")[0] == 1.0


def test_eps_grids_start_where_a_network_error_is_not_amplified():
    """bench/samplers.py's conditioning section, small: a 1e-3 error of an ε network moves the samples far
    from t = 1 (x0 = (x - sigma eps) / alpha with alpha = 4.5e-5) and little from log-SNR -8."""
    from bench.samplers import conditioning_rows

    rows = [r for r in conditioning_rows(samples=400, nfe=10) if r["prediction"] == "eps"]
    for grid in ("uniform", "logsnr", "karras"):
        library, from_one = ([r["rms_moved"] for r in rows if r["grid"] == grid and r["library"] is flag][0]
                             for flag in (True, False))
        assert library < 0.03 and from_one > 10 * library, (grid, library, from_one)
