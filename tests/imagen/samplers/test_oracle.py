"""One step of our DDIM and DPM-Solver++ equals diffusers' schedulers on an identical alpha grid."""

import pytest
import torch

from imagen.samplers import ddim, dpm_solver
from imagen.samplers.common import Level

diffusers = pytest.importorskip("diffusers")


def _level(scheduler, timestep: int) -> Level:
    alpha_bar = scheduler.alphas_cumprod[timestep].double()
    alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return Level(t=float(timestep), alpha=float(alpha), sigma=float(sigma), lam=float(alpha.log() - sigma.log()))


def _x0_predictions(count: int, shape=(2, 3, 8, 8)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * 0.7 for _ in range(count)]


def test_ddim_step_matches_diffusers():
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    prediction_type="sample", clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(20)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    timesteps = [int(t) for t in sched.timesteps]
    for i, x0 in enumerate(_x0_predictions(len(timesteps) - 1)):
        t, s = timesteps[i], timesteps[i + 1]
        expected = sched.step(x0, t, x, eta=0.0).prev_sample
        ours = ddim.step(x, x0, _level(sched, t), _level(sched, s))
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
        x = expected


@pytest.mark.parametrize("order", [2, 3])
def test_dpm_solver_pp_steps_match_diffusers(order):
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample",
        algorithm_type="dpmsolver++", solver_order=order, solver_type="midpoint", lower_order_final=False,
        final_sigmas_type="sigma_min")
    sched.set_timesteps(15)
    timesteps = [int(t) for t in sched.timesteps]
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    history, lams = [], []
    for i, x0 in enumerate(_x0_predictions(len(timesteps) - 1)):
        t, s = _level(sched, timesteps[i]), _level(sched, timesteps[i + 1])
        expected = sched.step(x0, timesteps[i], x).prev_sample
        history, lams = [x0, *history][:order], [t.lam, *lams][:order]
        ours = dpm_solver.step(x, history, lams, t, s)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
        x = expected
