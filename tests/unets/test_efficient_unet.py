"""EfficientUNet: shapes at every stage size, gradients, determinism, text masking, the null condition,
SR conditioning, and the execution options (channels_last, bf16 autocast, gradient checkpointing)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from configs import UNetConfig
from unets import EfficientUNet

TEXT_DIM = 12


def tiny_config(**overrides) -> UNetConfig:
    """Two levels, self- and cross-attention at the lower one; 8 base channels."""
    fields = dict(channels=8, channel_mults=(1, 2), num_res_blocks=(1, 2), self_attn=(False, True),
                  cross_attn=(False, True), head_dim=8, cond_dim=16)
    return dataclasses.replace(UNetConfig(**fields), **overrides)


def perturb(net: torch.nn.Module, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """Add small noise to every parameter, so zero-initialised output layers no longer hide the rest."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return net


def make_net(config: UNetConfig | None = None, *, lowres_cond: bool = False, seed: int = 0) -> EfficientUNet:
    torch.manual_seed(seed)
    return perturb(EfficientUNet(config or tiny_config(), text_dim=TEXT_DIM, lowres_cond=lowres_cond), seed=seed)


def make_inputs(batch: int = 2, size: int = 16, *, length: int = 5, lowres_cond: bool = False, seed: int = 0) -> dict:
    """Keyword arguments of a forward: x, time, text (last token of row 0 is padding) and, for SR, lowres."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, -1] = False
    inputs = dict(x=torch.randn(batch, 3, size, size, generator=g), time=torch.rand(batch, generator=g),
                  text_embeds=torch.randn(batch, length, TEXT_DIM, generator=g), text_mask=mask)
    if lowres_cond:
        inputs["lowres"] = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        inputs["lowres_level"] = torch.rand(batch, generator=g)
    return inputs


@pytest.fixture
def net() -> EfficientUNet:
    return make_net().eval()


def _sr_no_self_attn(**overrides):
    return tiny_config(channels=4, channel_mults=(1, 2, 2), num_res_blocks=(1, 1, 1), self_attn=(False,) * 3,
                       cross_attn=(False, False, True), head_dim=4, cond_dim=8, **overrides)


@pytest.mark.parametrize("size", [64])
def test_base_output_shape_equals_input(size):
    cfg = tiny_config(channel_mults=(1, 2, 2), num_res_blocks=(1, 1, 2), self_attn=(False, True, True),
                      cross_attn=(False, True, True))
    net = make_net(cfg).eval()
    with torch.no_grad():
        out = net(**make_inputs(2, size))
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32 and out.isfinite().all()


@pytest.mark.parametrize("size", [64, 256])
def test_sr_with_self_attention_shapes(size):
    net = make_net(tiny_config(channels=4, head_dim=4, cond_dim=8), lowres_cond=True).eval()
    with torch.no_grad():
        out = net(**make_inputs(1, size, lowres_cond=True))
    assert out.shape == (1, 3, size, size) and out.isfinite().all()


def test_sr_without_self_attention_is_fully_convolutional():
    """One net (as if trained on 64 px crops) runs at 64, 96, 256 and 1024 px."""
    net = make_net(_sr_no_self_attn(), lowres_cond=True).eval()
    with torch.no_grad():
        for size in (64, 96, 256, 1024):
            out = net(**make_inputs(1, size, lowres_cond=True))
            assert out.shape == (1, 3, size, size) and out.isfinite().all()


def test_zero_initialised_output():
    torch.manual_seed(0)
    net = EfficientUNet(tiny_config(), text_dim=TEXT_DIM)
    with torch.no_grad():
        out = net(**make_inputs())
    assert torch.count_nonzero(out) == 0


def test_gradients_reach_every_parameter():
    net = make_net(tiny_config(), lowres_cond=True).train()
    inputs = make_inputs(4, 16, lowres_cond=True)
    inputs["drop_text"] = torch.tensor([False, True, False, False])  # null condition and text both used
    net(**inputs).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    assert all(p.grad.isfinite().all() for p in net.parameters())


def test_eval_forward_is_deterministic_and_dropout_only_in_training():
    net = make_net(tiny_config(dropout=0.5))
    inputs = make_inputs()
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(**inputs), net(**inputs), rtol=0, atol=0)
        net.train()
        assert not torch.allclose(net(**inputs), net(**inputs))


def test_rows_are_independent_of_the_rest_of_the_batch(net):
    """A doubled guidance batch (cond ‖ uncond) gives each half what it would give alone."""
    inputs = make_inputs(4)
    inputs["drop_text"] = torch.tensor([False, False, True, True])
    with torch.no_grad():
        full = net(**inputs)
        half = net(**{k: v[:2] for k, v in inputs.items()})
    torch.testing.assert_close(full[:2], half, rtol=1e-5, atol=1e-6)


def test_appending_padding_tokens_does_not_change_the_output(net):
    inputs = make_inputs(2, length=5)
    padded = dict(inputs)
    padded["text_embeds"] = torch.cat([inputs["text_embeds"], 100 * torch.randn(2, 7, TEXT_DIM)], dim=1)
    padded["text_mask"] = torch.cat([inputs["text_mask"], torch.zeros(2, 7, dtype=torch.bool)], dim=1)
    scrambled = dict(inputs)  # the values behind padding positions do not matter either
    scrambled["text_embeds"] = inputs["text_embeds"].clone()
    scrambled["text_embeds"][0, -1] = 1e3
    with torch.no_grad():
        ref = net(**inputs)
        torch.testing.assert_close(net(**padded), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(**scrambled), ref, rtol=1e-5, atol=1e-5)


def test_text_mask_defaults_to_all_real_tokens(net):
    inputs = make_inputs()
    inputs["text_mask"] = torch.ones_like(inputs["text_mask"])
    with torch.no_grad():
        torch.testing.assert_close(net(**{**inputs, "text_mask": None}), net(**inputs))


@pytest.mark.parametrize("config, lowres_cond", [(tiny_config(cross_attn=(True, True)), False),
                                                  (_sr_no_self_attn(), True)])
def test_text_encoded_once_gives_the_same_output_at_every_step(config, lowres_cond):
    net = make_net(config, lowres_cond=lowres_cond).eval()
    inputs = make_inputs(size=32, lowres_cond=lowres_cond)
    drop = torch.tensor([False, True])
    assert [reader.slot for reader in net.text_readers] == list(range(len(net.text_readers))) != []
    with torch.no_grad():
        text = net.encode_text(inputs["text_embeds"], inputs["text_mask"], drop, keys_values=True)
        assert len(text.keys_values) == len(net.text_readers)
        kept = {k: v for k, v in inputs.items() if k not in ("text_embeds", "text_mask")}
        for time in (0.9, 0.3):  # two steps of a sampling run, one encoding
            step = {**kept, "time": torch.full((2,), time)}
            torch.testing.assert_close(net(**step, text=text), net(**inputs | step, drop_text=drop),
                                       rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="either as text_embeds or already encoded as text"):
        net(**inputs, text=text)


def test_null_condition_is_learned_and_differs_from_text(net):
    inputs = make_inputs(2)
    with torch.no_grad():
        cond = net(**inputs)
        dropped = net(**inputs, drop_text=torch.tensor([True, False]))
        no_text = net(**{**inputs, "text_embeds": None, "text_mask": None})
    torch.testing.assert_close(dropped[1], cond[1])  # rows not dropped keep their text
    assert not torch.allclose(dropped[0], cond[0], atol=1e-4)  # the dropped row differs
    torch.testing.assert_close(dropped[0], no_text[0], rtol=1e-5, atol=1e-5)  # and equals "no text at all"
    names = {n for n, _ in net.named_parameters()}
    assert {"text.null_tokens", "text.null_pooled"} <= names


def test_null_path_changes_after_a_training_step():
    """From the real (zero-output) initialisation, one optimizer step makes cond and null outputs differ."""
    torch.manual_seed(0)
    net = EfficientUNet(tiny_config(), text_dim=TEXT_DIM)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    inputs = make_inputs(4)
    inputs["drop_text"] = torch.tensor([False, True, False, True])
    for _ in range(2):
        loss = (net(**inputs) - inputs["x"]).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    net.eval()
    with torch.no_grad():
        cond = net(**make_inputs(2))
        null = net(**make_inputs(2), drop_text=torch.ones(2, dtype=torch.bool))
    assert not torch.allclose(cond, null, atol=1e-5)


def test_row_without_any_real_token_is_the_null_condition_and_finite(net):
    inputs = make_inputs(2)
    inputs["text_mask"] = inputs["text_mask"].clone()
    inputs["text_mask"][1] = False
    with torch.no_grad():
        out = net(**inputs)
        null = net(**inputs, drop_text=torch.tensor([False, True]))
    assert out.isfinite().all()
    torch.testing.assert_close(out, null)
    # and its gradients are finite too (softmax never sees an all-masked row)
    net.train()
    net(**inputs).sum().backward()
    assert all(p.grad is None or p.grad.isfinite().all() for p in net.parameters())


def test_sr_conditioning_uses_lowres_image_and_level():
    net = make_net(tiny_config(), lowres_cond=True).eval()
    inputs = make_inputs(2, lowres_cond=True)
    with torch.no_grad():
        ref = net(**inputs)
        other_image = net(**{**inputs, "lowres": -inputs["lowres"]})
        other_level = net(**{**inputs, "lowres_level": 1 - inputs["lowres_level"]})
    assert not torch.allclose(ref, other_image) and not torch.allclose(ref, other_level)


@pytest.mark.parametrize("lowres_cond, drop, message", [
    (True, ("lowres",), "lowres_cond=True"),
    (True, ("lowres_level",), "lowres_cond=True"),
    (False, (), "lowres_cond=False"),
])
def test_lowres_arguments_are_required_iff_sr(lowres_cond, drop, message):
    net = make_net(lowres_cond=lowres_cond)
    inputs = make_inputs(lowres_cond=True)
    for key in drop:
        inputs.pop(key)
    with pytest.raises(ValueError, match=message):
        net(**inputs)


@pytest.mark.parametrize("change, message", [
    (lambda i: {**i, "x": i["x"][..., :14, :14]}, "divisible by 4"),
    (lambda i: {**i, "x": i["x"][:, :1]}, r"x must be \(B, 3, H, W\)"),
    (lambda i: {**i, "time": i["time"][:1]}, "time must be"),
    (lambda i: {**i, "text_embeds": i["text_embeds"][..., :5]}, "text_embeds must be"),
    (lambda i: {**i, "text_mask": i["text_mask"][:, :3]}, "text_mask must be"),
    (lambda i: {**i, "drop_text": torch.zeros(3, dtype=torch.bool)}, "drop_text must be"),
])
def test_bad_inputs_raise_clear_value_errors(net, change, message):
    with pytest.raises(ValueError, match=message):
        net(**change(make_inputs()))


def test_classic_order_has_the_same_blocks_and_runs_at_full_resolution():
    efficient = EfficientUNet(tiny_config(channels=32), text_dim=TEXT_DIM)
    classic = EfficientUNet(tiny_config(channels=32, efficient_order=False), text_dim=TEXT_DIM)
    assert [n for n, _ in efficient.named_parameters()] == [n for n, _ in classic.named_parameters()]
    counts = [sum(p.numel() for p in net.parameters()) for net in (efficient, classic)]
    assert abs(counts[0] / counts[1] - 1) < 0.02  # only level 0's resampling convolutions differ
    perturbed = make_net(tiny_config(efficient_order=False)).eval()
    with torch.no_grad():
        assert perturbed(**make_inputs(1, 6 * 2)).shape == (1, 3, 12, 12)  # divisible by 2, not by 4


@pytest.mark.parametrize("overrides", [
    dict(scale_shift=False), dict(scale_skip=False), dict(pooled_text=False), dict(text_layernorm=False),
    dict(num_res_blocks=(0, 1)), dict(self_attn=(True, True), cross_attn=(True, False)),
    dict(position_embedding=True),
])
def test_switchable_choices_run(overrides):
    net = make_net(tiny_config(**overrides), lowres_cond=True)
    out = net(**make_inputs(2, lowres_cond=True), drop_text=torch.tensor([True, False]))
    out.mean().backward()
    assert out.shape == (2, 3, 16, 16) and out.isfinite().all()


def test_without_text_layers_text_is_ignored():
    net = make_net(tiny_config(cross_attn=(False, False), pooled_text=False)).eval()
    assert net.text is None
    inputs = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(net(**inputs), net(**{**inputs, "text_embeds": None, "text_mask": None}))


def test_channels_last_matches_contiguous():
    net = make_net(tiny_config(), lowres_cond=True).eval()
    inputs = make_inputs(2, lowres_cond=True)
    with torch.no_grad():
        ref = net(**inputs)
        net = net.to(memory_format=torch.channels_last)
        last = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in inputs.items()}
        out = net(**last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_forward_and_backward():
    net = make_net(tiny_config(), lowres_cond=True)
    inputs = make_inputs(2, lowres_cond=True)
    with torch.no_grad():
        ref = net(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(**inputs)
    assert out.isfinite().all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max() + 1e-2
    out.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in net.parameters())


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        net = make_net(tiny_config(gradient_checkpointing=checkpointing), lowres_cond=True).train()
        net(**make_inputs(2, lowres_cond=True)).square().mean().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_constructor_checks_its_arguments():
    with pytest.raises(TypeError, match="UNetConfig"):
        EfficientUNet({"channels": 8}, text_dim=TEXT_DIM)
    with pytest.raises(ValueError, match="text_dim"):
        EfficientUNet(tiny_config(), text_dim=0)
