import torch

from imagen.denoiser import Condition, Denoiser
from imagen.guidance import guided, linear_guidance
from imagen.mixture import GaussianMixture, MixtureNet, mixture_condition
from imagen.schedules import Schedule


def _setup(batch=6):
    schedule = Schedule()
    net = MixtureNet(GaussianMixture.default(dim=4), schedule)
    denoiser = Denoiser(net, schedule, prediction="x0")
    x = torch.randn(batch, 4, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), 0.6)
    return net, denoiser, x, t


def test_scale_one_is_the_conditional_model_in_one_plain_forward():
    net, denoiser, x, t = _setup()
    cond = mixture_condition(1, len(x))
    out = guided(denoiser, cond, 1.0)(x, t)
    assert net.calls == 1
    torch.testing.assert_close(out, denoiser(x, t, cond).x0)


def test_scale_zero_is_the_unconditional_model():
    _, denoiser, x, t = _setup()
    cond = mixture_condition(1, len(x))
    torch.testing.assert_close(guided(denoiser, cond, 0.0)(x, t), denoiser(x, t, Condition()).x0)


def test_guidance_is_one_forward_on_the_doubled_batch_and_extrapolates():
    net, denoiser, x, t = _setup()
    cond = mixture_condition(2, len(x))
    out = guided(denoiser, cond, 4.0)(x, t)
    assert net.calls == 1
    c, u = denoiser(x, t, cond).x0, denoiser(x, t, cond.unconditional()).x0
    torch.testing.assert_close(out, u + 4.0 * (c - u))


def test_negative_condition_replaces_the_null_condition():
    _, denoiser, x, t = _setup()
    cond, negative = mixture_condition(2, len(x)), mixture_condition(0, len(x))
    c, n = denoiser(x, t, cond).x0, denoiser(x, t, negative).x0
    torch.testing.assert_close(guided(denoiser, cond, 3.0, negative=negative)(x, t), n + 3.0 * (c - n))


def test_guidance_scale_may_vary_over_t():
    _, denoiser, x, _ = _setup()
    t = torch.linspace(0.1, 0.9, len(x))
    cond = mixture_condition(1, len(x))
    schedule_w = linear_guidance(start=7.0, end=1.0)
    c, u = denoiser(x, t, cond).x0, denoiser(x, t, cond.unconditional()).x0
    w = (1.0 + 6.0 * t)[:, None]
    torch.testing.assert_close(guided(denoiser, cond, schedule_w)(x, t), u + w * (c - u))


def test_condition_cat_pads_text_to_one_length():
    a = Condition(text_embeds=torch.ones(2, 3, 5), text_mask=torch.ones(2, 3, dtype=torch.bool))
    b = Condition(text_embeds=torch.ones(1, 5, 5), text_mask=torch.ones(1, 5, dtype=torch.bool))
    both = a.cat(b)
    assert both.text_embeds.shape == (3, 5, 5)
    assert both.text_mask.tolist()[0] == [True, True, True, False, False]
    assert both.text_embeds[0, 3:].abs().sum() == 0
