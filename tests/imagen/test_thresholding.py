import pytest
import torch

from imagen.thresholding import dynamic_threshold, make_x0_fn, static_threshold


def test_dynamic_is_the_identity_inside_the_unit_range():
    x0 = torch.rand(3, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(dynamic_threshold(x0, 0.995), x0)


def test_dynamic_on_a_crafted_tensor():
    # sample 0: |x| values 0.5 x 99 and 3.0 once -> the 0.99 quantile lies between 0.5 and 3.0
    x = torch.full((2, 100), 0.5)
    x[0, 0] = 3.0
    x[1] = torch.linspace(-4.0, 4.0, 100)
    out = dynamic_threshold(x, 0.99)
    s0 = torch.quantile(x[0].abs(), 0.99).clamp_min(1.0)
    s1 = torch.quantile(x[1].abs(), 0.99)
    assert s0.item() == pytest.approx(1.0)  # s = max(q, 1) = 1 -> plain clipping
    assert out[0, 0].item() == pytest.approx(1.0) and out[0, 1].item() == pytest.approx(0.5)
    torch.testing.assert_close(out[1], x[1].clamp(-s1, s1) / s1)
    assert out.abs().max() <= 1.0


def test_dynamic_percentile_one_rescales_by_the_max():
    x = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(dynamic_threshold(x, 1.0), x / 2.0)


def test_static_clips():
    torch.testing.assert_close(static_threshold(torch.tensor([-3.0, 0.2, 7.0])), torch.tensor([-1.0, 0.2, 1.0]))


def test_make_x0_fn_modes_and_errors():
    assert make_x0_fn("none") is None
    assert make_x0_fn("static") is static_threshold
    assert make_x0_fn("dynamic", 0.9)(torch.full((1, 10), 5.0)).max().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown thresholding 'soft'; valid: none, static, dynamic"):
        make_x0_fn("soft")
    from imagen.options import SamplingOptions  # the percentile's range is checked by the options that carry it

    with pytest.raises(ValueError, match="percentile must be in"):
        SamplingOptions(dynamic_percentile=1.5).checked()
