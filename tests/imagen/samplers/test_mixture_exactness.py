"""Given the exact denoiser of a Gaussian mixture, each sampler must reproduce the mixture.

Tolerances are stated against `GaussianMixture.error` (weights + weighted mean and std errors) at
50k samples in 8-D, where exact samples from the mixture themselves score about 0.008-0.010.
"""

import pytest
import torch

from imagen.denoiser import Condition, Denoiser
from imagen.guidance import guided
from imagen.mixture import GaussianMixture, MixtureNet, mixture_condition
from imagen.samplers import get_sampler, time_grid
from imagen.schedules import Schedule
from imagen.thresholding import make_x0_fn

N = 50_000
TOLERANCE = 0.025
NOISE = 0.002  # how much the error of one run moves with the seed of its noise


@pytest.fixture(scope="module")
def setup():
    schedule = Schedule()
    mixture = GaussianMixture.default()
    denoiser = Denoiser(MixtureNet(mixture, schedule), schedule, prediction="x0")
    x_T = torch.randn(N, mixture.means.shape[1], generator=torch.Generator().manual_seed(1))
    return schedule, mixture, denoiser, x_T


def _run(setup, name, steps, grid, **options):
    schedule, mixture, denoiser, x_T = setup
    sampler = get_sampler(name, **options)
    out = sampler(lambda x, t: denoiser(x, t, Condition()).x0, x_T, time_grid(grid, steps, schedule),
                  schedule=schedule, generator=torch.Generator().manual_seed(2))
    return mixture.error(out)


@pytest.fixture(scope="module")
def errors(setup):
    return {
        "ddpm250": _run(setup, "ddpm", 250, "uniform"),
        "ddim100": _run(setup, "ddim", 100, "uniform"),
        "dpm++2_20": _run(setup, "dpm++", 20, "logsnr", order=2),
        "dpm++3_20": _run(setup, "dpm++", 20, "logsnr", order=3),
    }


def test_every_sampler_reproduces_the_mixture(errors):
    for name, error in errors.items():
        assert error < TOLERANCE, (name, error)


def test_dpm_solver_pp_at_20_steps_is_as_close_as_ddim_100_and_ddpm_250(errors):
    best_slow = min(errors["ddim100"], errors["ddpm250"])
    assert errors["dpm++2_20"] <= best_slow + NOISE, errors
    assert errors["dpm++3_20"] <= best_slow + NOISE, errors


def test_few_steps_of_ddim_are_visibly_worse(setup, errors):
    assert _run(setup, "ddim", 5, "uniform") > 3 * errors["ddim100"]


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm++"])
def test_guidance_with_dynamic_thresholding_stays_in_range_and_on_the_class(setup, name):
    schedule, mixture, denoiser, x_T = setup
    x_T = x_T[:4000]
    denoise = guided(denoiser, mixture_condition(2, len(x_T)), guidance_scale=4.0)
    out = get_sampler(name)(denoise, x_T, time_grid("logsnr", 25, schedule), schedule=schedule,
                            x0_fn=make_x0_fn("dynamic", 0.995), generator=torch.Generator().manual_seed(3))
    assert out.abs().max() <= 1.0
    nearest = torch.cdist(out.double(), mixture.means).argmin(1)
    assert (nearest == 2).float().mean() > 0.99
    # guidance sharpens the class: its spread shrinks below the component's own std
    assert out.double().std(0).mean() < mixture.stds[2]


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpm++"])
def test_samplers_are_reproducible_given_a_generator(setup, name):
    schedule, _, denoiser, x_T = setup

    def run(seed):
        sampler = get_sampler(name, eta=0.5)
        return sampler(lambda x, t: denoiser(x, t, Condition()).x0, x_T[:256], time_grid("uniform", 10, schedule),
                       schedule=schedule, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    if name != "dpm++":  # ancestral noise depends on the seed; DPM-Solver++ is deterministic
        assert not torch.equal(run(5), run(6))


def test_per_sample_generators_make_samples_independent_of_the_batch(setup):
    schedule, _, denoiser, x_T = setup
    from imagen.noise import generators

    def run(rows):
        return get_sampler("ddpm")(lambda x, t: denoiser(x, t, Condition()).x0, x_T[rows],
                                   time_grid("uniform", 8, schedule), schedule=schedule,
                                   generator=generators([100 + r for r in rows]))

    torch.testing.assert_close(run([0, 1, 2, 3])[2], run([2])[0])


def test_callback_sees_every_network_evaluation(setup):
    schedule, _, denoiser, x_T = setup
    seen = []
    get_sampler("dpm++")(lambda x, t: denoiser(x, t, Condition()).x0, x_T[:8], time_grid("logsnr", 7, schedule),
                         schedule=schedule, callback=lambda i, t, x, x0: seen.append((i, t)))
    assert [i for i, _ in seen] == list(range(7))
    assert seen[0][1] == 1.0
