import math

import pytest
import torch

from configs import ScheduleConfig
from imagen.schedules import Schedule

KINDS = ["cosine", "linear"]


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_sigma_are_variance_preserving(kind):
    alpha, sigma = Schedule(ScheduleConfig(kind=kind)).alpha_sigma(torch.linspace(0, 1, 101, dtype=torch.float64))
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones(101, dtype=torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_log_snr_is_strictly_decreasing_and_clipped(kind):
    schedule = Schedule(ScheduleConfig(kind=kind, logsnr_min=-15.0, logsnr_max=12.0))
    t = torch.linspace(0, 1, 2001, dtype=torch.float64)
    log_snr = schedule.log_snr(t)
    assert bool((log_snr[1:] < log_snr[:-1]).all())
    assert log_snr[0].item() == pytest.approx(min(12.0, log_snr[0].item()), abs=1e-9)
    assert log_snr.max() <= 12.0 + 1e-9 and log_snr.min() >= -15.0 - 1e-9


def test_cosine_ends_are_exactly_the_clipping_bounds():
    schedule = Schedule(ScheduleConfig(kind="cosine", logsnr_min=-20.0, logsnr_max=20.0))
    ends = schedule.log_snr(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ends, torch.tensor([20.0, -20.0], dtype=torch.float64))


def test_cosine_matches_the_closed_form_inside_the_range():
    schedule = Schedule()
    t = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    raw_t = schedule.t_min + t * (schedule.t_max - schedule.t_min)
    alpha, _ = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha, torch.cos(0.5 * math.pi * raw_t))
    assert schedule.log_snr(torch.tensor(0.5, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_t_from_log_snr_inverts_log_snr(kind):
    schedule = Schedule(ScheduleConfig(kind=kind))
    t = torch.linspace(0, 1, 501, dtype=torch.float64)
    torch.testing.assert_close(schedule.t_from_log_snr(schedule.log_snr(t)), t, atol=1e-9, rtol=0)


def test_t_from_log_snr_saturates_outside_the_range():
    schedule = Schedule()
    t = schedule.t_from_log_snr(torch.tensor([100.0, -100.0], dtype=torch.float64))
    assert t.tolist() == [0.0, 1.0]


def test_float32_input_gives_float32_output():
    assert Schedule().log_snr(torch.rand(4)).dtype == torch.float32


def test_linear_schedule_spans_the_papers_range_and_reaches_both_ends():
    schedule = Schedule(ScheduleConfig(kind="linear", logsnr_min=-20.0, logsnr_max=20.0))
    ends = schedule.log_snr(torch.tensor([0.0, 1.0], dtype=torch.float64))
    # continuous DDPM linear betas: log-SNR 9.21 at t = 0, -10.0 at t = 1; the configured [-20, 20] is not
    # reachable, so t is not stretched beyond the schedule
    torch.testing.assert_close(ends, torch.tensor([9.2103, -10.0001], dtype=torch.float64), atol=1e-4, rtol=0)
    assert (schedule.t_min, schedule.t_max) == (0.0, 1.0)
    assert schedule.logsnr_max == pytest.approx(9.2103, abs=1e-4)


def test_a_range_outside_the_schedule_is_refused():
    with pytest.raises(ValueError, match="spans log-SNR"):
        Schedule(ScheduleConfig(kind="linear", logsnr_min=10.0, logsnr_max=20.0))
