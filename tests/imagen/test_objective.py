import pytest
import torch

from configs import ObjectiveConfig
from imagen.objective import input_scale, loss_weight, per_sample_loss, q_sample, target, to_x0_eps
from imagen.schedules import Schedule


def _batch():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0.01, 0.2, 0.5, 0.8, 0.99], dtype=torch.float64)
    alpha, sigma = Schedule().alpha_sigma(t)
    return x0, eps, alpha, sigma


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_conversions_round_trip(prediction):
    x0, eps, alpha, sigma = _batch()
    x_t = q_sample(x0, alpha, sigma, eps)
    out = target(prediction, x0, eps, alpha, sigma)
    x0_hat, eps_hat = to_x0_eps(prediction, out, x_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0, atol=1e-6, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-6, rtol=0)


def test_q_sample_and_v_follow_the_definitions():
    x0, eps, alpha, sigma = _batch()
    a, s = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(q_sample(x0, alpha, sigma, eps), a * x0 + s * eps)
    torch.testing.assert_close(target("v", x0, eps, alpha, sigma), a * eps - s * x0)


def test_unknown_prediction_is_a_value_error():
    x0, eps, alpha, sigma = _batch()
    with pytest.raises(ValueError, match="unknown prediction 'score'"):
        target("score", x0, eps, alpha, sigma)


def test_min_snr_weights():
    log_snr = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    snr = log_snr.exp()
    gamma = 5.0
    torch.testing.assert_close(loss_weight("eps", log_snr, gamma), snr.clamp(max=gamma) / snr)
    torch.testing.assert_close(loss_weight("v", log_snr, gamma), snr.clamp(max=gamma) / (snr + 1))
    torch.testing.assert_close(loss_weight("x0", log_snr, gamma), snr.clamp(max=gamma))
    torch.testing.assert_close(loss_weight("eps", log_snr, 0.0), torch.ones(3, dtype=torch.float64))


def test_per_sample_loss_is_per_sample_and_zero_at_the_target():
    x0, eps, alpha, sigma = _batch()
    config = ObjectiveConfig(prediction="v")
    log_snr = torch.log(alpha**2 / sigma**2)
    perfect = target("v", x0, eps, alpha, sigma)
    loss = per_sample_loss(config, perfect, x0.float(), eps.float(), alpha, sigma, log_snr)
    assert loss.shape == (5,) and torch.allclose(loss, torch.zeros(5, dtype=loss.dtype), atol=1e-6)
    off = perfect.clone()
    off[2] += 1.0
    loss = per_sample_loss(config, off, x0, eps, alpha, sigma, log_snr)
    assert loss[2] == pytest.approx(1.0) and float(loss[[0, 1, 3, 4]].abs().max()) < 1e-6


@pytest.mark.parametrize("sigma_data", [1.0, 0.05])
def test_v_with_sigma_data_round_trips_and_is_plain_v_at_one(sigma_data):
    x0, eps, alpha, sigma = _batch()
    x0 = x0 * sigma_data
    x_t = q_sample(x0, alpha, sigma, eps)
    v = target("v", x0, eps, alpha, sigma, sigma_data)
    x0_hat, eps_hat = to_x0_eps("v", v, x_t, alpha, sigma, sigma_data)
    torch.testing.assert_close(x0_hat, x0, atol=1e-9, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-9, rtol=0)
    if sigma_data == 1.0:
        torch.testing.assert_close(v, target("v", x0, eps, alpha, sigma))


def test_v_with_sigma_data_is_edm_preconditioning():
    # c_skip, c_out, c_in of Karras et al. (2022), table 1, for the VP process: x0 = c_skip x_t - c_out v
    x0, eps, alpha, sigma = _batch()
    sd = 0.05
    x_t = q_sample(x0 * sd, alpha, sigma, eps)
    k2 = (alpha**2 * sd**2 + sigma**2).view(-1, 1, 1, 1)
    a, s = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
    out = torch.randn_like(x_t)
    x0_hat, _ = to_x0_eps("v", out, x_t, alpha, sigma, sd)
    torch.testing.assert_close(x0_hat, a * sd**2 / k2 * x_t - sd * s / k2.sqrt() * out)
    torch.testing.assert_close(input_scale("v", alpha, sigma, sd), 1 / k2.flatten().sqrt())
    # the target has unit variance at every noise level when x0 has standard deviation sigma_data
    big = torch.randn(4096, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sd
    noise = torch.randn(4096, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for i in range(len(alpha)):
        v = target("v", big[None], noise[None], alpha[i:i + 1], sigma[i:i + 1], sd)
        assert v.std().item() == pytest.approx(1.0, abs=0.05)


def test_a_pixel_weight_counts_the_subject_more_and_uniform_weights_change_nothing():
    x0, eps, alpha, sigma = _batch()
    config = ObjectiveConfig(prediction="v")
    log_snr = torch.log(alpha**2 / sigma**2)
    output = target("v", x0, eps, alpha, sigma).float().clone()
    output[:, :, :2] += 1.0  # every sample wrong on its top two rows only
    plain = per_sample_loss(config, output, x0, eps, alpha, sigma, log_snr)
    uniform = torch.full((x0.shape[0], 1, *x0.shape[-2:]), 0.3)
    torch.testing.assert_close(per_sample_loss(config, output, x0, eps, alpha, sigma, log_snr, uniform), plain)
    subject = torch.zeros_like(uniform)
    subject[:, :, :2] = 1.0
    assert torch.allclose(per_sample_loss(config, output, x0, eps, alpha, sigma, log_snr, subject),
                          torch.ones_like(plain))  # only the wrong rows count: every one of their pixels is off by 1
    subject[:, :, :2] = 0.0
    subject[:, :, 2:] = 1.0
    assert float(per_sample_loss(config, output, x0, eps, alpha, sigma, log_snr, subject).abs().max()) < 1e-6
