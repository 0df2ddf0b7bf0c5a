"""unets/layers.py, unets/attention.py and unets/conditioning.py on tiny exact cases."""

from __future__ import annotations

import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from unets.attention import (
    AttentionBlock,
    AttentionPool,
    CrossAttention,
    PositionEmbedding,
    SelfAttention,
    TextCondition,
    num_heads,
)
from unets.conditioning import NUM_NULL_TOKENS, ScalarEmbedding, TextConditioner, sinusoidal_embedding
from unets.group_norm import GroupNorm
from unets.layers import Downsample, PointwiseConv, ResBlock, Upsample, group_count


@pytest.mark.parametrize("channels, groups", [(1, 1), (7, 7), (16, 16), (48, 24), (96, 32), (1024, 32)])
def test_group_count_divides_and_is_at_most_32(channels, groups):
    assert group_count(channels) == groups


def test_num_heads():
    assert num_heads(256, 64) == 4 and num_heads(16, 64) == 1


def test_sinusoidal_embedding_values():
    emb = sinusoidal_embedding(torch.tensor([0.0, 1.0]), 5)
    assert emb.shape == (2, 5) and emb.dtype == torch.float32
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]))  # cos 0, sin 0, odd pad
    # frequencies 1 and 1/100 for dim 4 (max_period 1e4, half = 2)
    torch.testing.assert_close(emb[1, :4], torch.tensor([math.cos(1), math.cos(0.01), math.sin(1), math.sin(0.01)]))


def test_scalar_embedding_resolves_small_time_differences():
    """t is scaled by 1000 before the sinusoid, so t and t + 1e-3 embed differently."""
    torch.manual_seed(0)
    emb = ScalarEmbedding(16, 8)
    out = emb(torch.tensor([0.5, 0.501]))
    assert out.shape == (2, 8) and (out[0] - out[1]).abs().max() > 1e-3


@pytest.mark.parametrize("in_ch, out_ch", [(8, 8), (8, 16)])
def test_resblock_starts_as_scaled_shortcut(in_ch, out_ch):
    torch.manual_seed(0)
    block = ResBlock(in_ch, out_ch, 4)
    x, cond = torch.randn(2, in_ch, 5, 5), torch.randn(2, 4)
    torch.testing.assert_close(block(x, cond), block.shortcut(x) / math.sqrt(2))
    assert ResBlock(8, 8, 4, scale_skip=False)(x[:, :8], cond).sub(x[:, :8]).abs().max() == 0


def test_resblock_film_scale_and_shift_depend_on_cond():
    torch.manual_seed(0)
    for scale_shift in (True, False):
        block = ResBlock(4, 4, 3, scale_shift=scale_shift)
        torch.nn.init.normal_(block.conv2.weight)
        x = torch.randn(1, 4, 6, 6)
        assert not torch.allclose(block(x, torch.zeros(1, 3)), block(x, torch.ones(1, 3)))
        assert block.cond.out_features == (8 if scale_shift else 4)


def test_downsample_and_upsample_shapes():
    x = torch.randn(2, 4, 8, 8)
    assert Downsample(4, 6, 2)(x).shape == (2, 6, 4, 4)
    assert Downsample(4, 6, 1)(x).shape == (2, 6, 8, 8)
    assert Upsample(4, 6, 2)(x).shape == (2, 6, 16, 16)
    assert Upsample(4, 6, 1)(x).shape == (2, 6, 8, 8)


def test_upsample_starts_as_nearest_neighbour_of_a_1x1_conv():
    """ICNR initialisation: the four sub-pixels of each output block are equal (no checkerboard)."""
    torch.manual_seed(0)
    up = Upsample(4, 3, 2)
    x = torch.randn(1, 4, 5, 5)
    conv = up.conv.weight.view(3, 4, 4)[:, 0]  # the shared (3, 4) kernel
    bias = up.conv.bias.view(3, 4)[:, 0]
    expected = F.interpolate(torch.einsum("oi,bihw->bohw", conv, x) + bias[:, None, None], scale_factor=2)
    torch.testing.assert_close(up(x), expected, rtol=1e-5, atol=1e-6)


def _naive_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def test_self_attention_matches_naive_softmax_attention():
    torch.manual_seed(0)
    attn = SelfAttention(8, head_dim=4)  # 2 heads
    torch.nn.init.normal_(attn.out.weight)
    x = torch.randn(2, 6, 8)
    q, k, v = (t.view(2, 6, 2, 4).transpose(1, 2) for t in attn.qkv(x).chunk(3, -1))
    expected = attn.out(_naive_attention(q, k, v).transpose(1, 2).reshape(2, 6, 8))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-6)


def test_cross_attention_honours_the_key_mask():
    torch.manual_seed(0)
    attn = CrossAttention(8, context_dim=6, head_dim=4)
    torch.nn.init.normal_(attn.out.weight)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = attn(x, context, mask)
    changed = context.clone()
    changed[~mask] = 1e4
    torch.testing.assert_close(attn(x, changed, mask), out)
    q = attn.q(x).view(2, 5, 2, 4).transpose(1, 2)
    k, v = (t.view(2, 3, 2, 4).transpose(1, 2) for t in attn.kv(context).chunk(2, -1))
    expected = attn.out(_naive_attention(q, k, v, mask[:, None, None]).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("self_attn, cross_attn", [(True, True), (True, False), (False, True)])
def test_attention_block_is_identity_at_init(self_attn, cross_attn):
    torch.manual_seed(0)
    block = AttentionBlock(8, context_dim=6, head_dim=4, self_attn=self_attn, cross_attn=cross_attn)
    x = torch.randn(2, 8, 3, 4)
    out = block(x, TextCondition(torch.randn(2, 3, 6), torch.ones(2, 3, dtype=torch.bool), None))
    torch.testing.assert_close(out, x)
    assert (block.self_attn is not None) == self_attn and (block.cross_attn is not None) == cross_attn


def test_attention_pool_ignores_padding():
    torch.manual_seed(0)
    pool = AttentionPool(8, 5, head_dim=4)
    tokens, mask = torch.randn(2, 4, 8), torch.tensor([[True, True, True, False], [True, False, False, False]])
    out = pool(tokens, mask)
    changed = tokens.clone()
    changed[~mask] = 1e3
    assert out.shape == (2, 5)
    torch.testing.assert_close(pool(changed, mask), out)
    torch.testing.assert_close(pool(tokens[1:, :1], mask[1:, :1]), out[1:], rtol=1e-5, atol=1e-6)


def test_text_conditioner_substitutes_null_tokens():
    torch.manual_seed(0)
    text = TextConditioner(6, 8, 5, head_dim=4)
    embeds = torch.randn(3, 2, 6)  # shorter than NUM_NULL_TOKENS: padded to it
    mask = torch.tensor([[True, False], [False, False], [True, True]])
    out = text(embeds, mask, torch.tensor([False, False, True]), batch=3)
    assert out.context.shape == (3, max(2, NUM_NULL_TOKENS), 8) and out.pooled.shape == (3, 5)
    assert out.mask[0].tolist() == [True, False, False, False]
    for row in (1, 2):  # all-padding row and dropped row -> the learned null condition
        assert out.mask[row].tolist() == [True] * NUM_NULL_TOKENS
        torch.testing.assert_close(out.context[row], text.null_tokens)
        torch.testing.assert_close(out.pooled[row], text.null_pooled)
    none = text(None, None, None, batch=2)
    torch.testing.assert_close(none.context, text.null_tokens.expand(2, -1, -1))
    torch.testing.assert_close(none.pooled, text.null_pooled.expand(2, -1))


def test_position_embedding_is_zero_at_init_and_distinguishes_pixels():
    pos = PositionEmbedding(16)
    like = torch.zeros(1)
    assert pos(4, 4, like).abs().max() == 0  # identity of the attention block at initialisation
    torch.nn.init.normal_(pos.proj.weight, generator=torch.Generator().manual_seed(0))
    table = pos(4, 4, like)
    assert table.shape == (16, 16)
    assert torch.cdist(table, table).fill_diagonal_(1.0).min() > 1e-3  # every pixel gets its own code
    # normalised coordinates: the corners of an 8x8 grid get the codes of the corners of a 4x4 grid
    big = pos(8, 8, like).view(8, 8, 16)
    torch.testing.assert_close(big[0, 0], table.view(4, 4, 16)[0, 0])
    torch.testing.assert_close(big[-1, -1], table.view(4, 4, 16)[-1, -1])


def test_attention_block_with_positions_is_not_translation_equivariant():
    block = AttentionBlock(8, context_dim=8, head_dim=8, self_attn=True, cross_attn=False, position=True)
    g = torch.Generator().manual_seed(0)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.5, generator=g)
    x = torch.randn(1, 8, 4, 4, generator=g)
    shifted = torch.roll(x, 1, dims=-1)
    assert not torch.allclose(block(torch.roll(x, 1, dims=-1), None), torch.roll(block(x, None), 1, -1),
                              atol=1e-4)
    block.position = None  # without positions, self-attention + per-token layers commute with the shift
    torch.testing.assert_close(block(shifted, None), torch.roll(block(x, None), 1, dims=-1))


@pytest.mark.parametrize("channels,groups", [(16, 16), (32, 8)])
def test_group_norm_channels_last_backward_matches_torch(channels, groups):
    """The channels_last training path (its own backward), in float32, against torch's GroupNorm in float64."""
    torch.manual_seed(0)
    x = (torch.randn(3, channels, 12, 10, dtype=torch.float64) * 2 + 1).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(channels, dtype=torch.float64), torch.randn(channels, dtype=torch.float64)
    dy = torch.randn_like(x)

    leaves = [t.detach().requires_grad_() for t in (x, weight, bias)]
    out = F.group_norm(leaves[0], groups, leaves[1], leaves[2], 1e-5)
    out.backward(dy)
    expected = [out.detach(), *(t.grad for t in leaves)]

    norm = GroupNorm(groups, channels)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(bias)
    x32 = x.float().requires_grad_()
    out = norm(x32)
    assert type(out.grad_fn).__name__ == "_ChannelsLastGroupNormBackward"
    out.backward(dy.float())
    for got, want in zip([out.detach(), x32.grad, norm.weight.grad, norm.bias.grad], expected, strict=True):
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4), (got.double() - want).abs().max()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("grad", [False, True])
def test_pointwise_conv_matches_torch_in_every_mode(memory_format, grad):
    """The same output as nn.Conv2d's 1x1 convolution in either layout, with and without autograd; the matrix
    product serves exactly NCHW sampling, and keeps the layout torch's convolution gives."""
    torch.manual_seed(0)
    conv = PointwiseConv(6, 10).to(memory_format=memory_format)
    unbiased = PointwiseConv(6, 4, 1, 1, 0, bias=False)  # as peft builds a LoRA factor: nn.Conv2d's arguments
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=memory_format)
    with torch.set_grad_enabled(grad), mock.patch("torch.baddbmm", wraps=torch.baddbmm) as product:
        out, factor = conv(x), unbiased(x)
    expected = F.conv2d(x, conv.weight, conv.bias)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(factor, F.conv2d(x, unbiased.weight))
    assert product.called == (not grad and memory_format == torch.contiguous_format)
    assert out.is_contiguous(memory_format=memory_format) == expected.is_contiguous(memory_format=memory_format)
