"""Attention layers of the Efficient U-Net: self-attention over pixels, masked cross-attention to text
tokens, and the per-level transformer-style block that combines them, all on
`torch.nn.functional.scaled_dot_product_attention`.

Token tensors are `(B, N, C)`; a key mask is `(B, L)` bool with True = attend. Callers guarantee that
every row of a key mask has at least one True (the text conditioner substitutes the learned null tokens
for rows without any), so softmax never runs over an all-masked row.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import zero_init
from .positions import fourier_positions


def num_heads(channels: int, head_dim: int) -> int:
    """Heads of an attention layer over `channels` features: channels // head_dim, at least one."""
    return max(1, channels // head_dim)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens `(B, N, C) -> (B, N, C)`; output projection zero-initialised."""

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        inner = self.heads * head_dim
        self.qkv = nn.Linear(channels, 3 * inner, bias=False)
        self.out = zero_init(nn.Linear(inner, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (_split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.out(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head attention from tokens `(B, N, C)` to context tokens `(B, L, context_dim)` whose padding
    is excluded by `mask (B, L)` (True = real token). Output `(B, N, C)`, projection zero-initialised.

    `keys_values(context)` and `attend(x, keys_values, mask)` split the forward, so that keys and values of a
    context that does not change (the text, over a sampling run) are projected once. A layer of a U-Net that
    reads the text has a `slot`: the index of its keys and values in `TextCondition.keys_values`."""

    def __init__(self, channels: int, context_dim: int, head_dim: int):
        super().__init__()
        self.heads = num_heads(channels, head_dim)
        inner = self.heads * head_dim
        self.q = nn.Linear(channels, inner, bias=False)
        self.kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.out = zero_init(nn.Linear(inner, channels))
        self.slot: int | None = None

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, context_dim) -> keys and values, each (B, heads, L, head_dim)."""
        k, v = self.kv(context.to(self.kv.weight.dtype)).chunk(2, dim=-1)
        return _split_heads(k, self.heads), _split_heads(v, self.heads)

    def attend(self, x: torch.Tensor, keys_values: tuple[torch.Tensor, torch.Tensor],
               mask: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q(x), self.heads)
        k, v = keys_values
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, L), broadcast over heads and queries
        return self.out(_merge_heads(F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype),
                                                                    attn_mask=attn_mask)))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.attend(x, self.keys_values(context), mask)


class TextCondition(NamedTuple):
    """What the U-Net sees of the text: `context (B, L', context_dim)` and `mask (B, L')` (True = attend;
    every row has at least one True) for cross-attention, `pooled (B, cond_dim)` (zeros if unused), and
    optionally `keys_values`: every text-reading cross-attention layer's keys and values of the context, by
    the layer's slot (projected once for a whole sampling run; empty: each layer projects its own)."""

    context: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor | None
    keys_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()


class FeedForward(nn.Module):
    """Per-token MLP `(B, N, C) -> (B, N, C)`: Linear -> GELU -> Linear (zero-init)."""

    def __init__(self, channels: int, mult: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(channels, mult * channels), nn.GELU(),
                                 zero_init(nn.Linear(mult * channels, channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PositionEmbedding(nn.Module):
    """Absolute position of every pixel for attention: sin/cos Fourier features of its normalised (x, y) in
    [-1, 1], projected to C channels (zero-initialised). Attention is otherwise blind to where a pixel is, so
    "at the top left" could only be read through the convolutions' zero padding. Resolution independent,
    but absolute: only for nets that see whole images (not for SR stages trained on crops)."""

    def __init__(self, channels: int, frequencies: int = 6):
        super().__init__()
        self.frequencies = frequencies
        self.proj = zero_init(nn.Linear(4 * frequencies, channels))

    def forward(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(H * W, C) in the dtype and device of `like`."""
        features = fourier_positions(h, w, self.frequencies, like.device)
        return self.proj(features.to(self.proj.weight.dtype)).to(like.dtype)


class AttentionBlock(nn.Module):
    """One transformer layer on a feature map: pre-LayerNorm self-attention (optional), cross-attention
    to the text (optional) and a feed-forward, each residual. `(B, C, H, W) -> (B, C, H, W)`.

    The identity at initialisation (every output projection is zero)."""

    def __init__(self, channels: int, *, context_dim: int, head_dim: int, self_attn: bool, cross_attn: bool,
                 ff_mult: int = 2, position: bool = False):
        super().__init__()
        assert self_attn or cross_attn, "an AttentionBlock needs self- or cross-attention"
        self.position = PositionEmbedding(channels) if position else None
        self.self_norm = nn.LayerNorm(channels) if self_attn else None
        self.self_attn = SelfAttention(channels, head_dim) if self_attn else None
        self.cross_norm = nn.LayerNorm(channels) if cross_attn else None
        self.cross_attn = CrossAttention(channels, context_dim, head_dim) if cross_attn else None
        self.ff_norm = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, ff_mult)

    def forward(self, x: torch.Tensor, text: TextCondition | None) -> torch.Tensor:
        """x (B, C, H, W); text: the context (B, L, context_dim) and mask (B, L) bool, or None without
        cross-attention -> (B, C, H, W)."""
        b, c, h, w = x.shape
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        # (B, H*W, C), made contiguous once (a view when x is channels_last): normalisations, projections and
        # residual sums then run on contiguous tokens instead of each copying a transposed view
        tokens = x.flatten(2).transpose(1, 2).contiguous()
        pos = self.position(h, w, tokens) if self.position is not None else 0.0  # added to the attention inputs
        if self.self_attn is not None:
            tokens = tokens + self.self_attn(self.self_norm(tokens) + pos)
        if self.cross_attn is not None:
            attn = self.cross_attn
            keys_values = text.keys_values[attn.slot] if text.keys_values else attn.keys_values(text.context)
            tokens = tokens + attn.attend(self.cross_norm(tokens) + pos, keys_values, text.mask)
        tokens = tokens + self.ff(self.ff_norm(tokens))
        out = tokens.transpose(1, 2).reshape(b, c, h, w)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out.contiguous()


class AttentionPool(nn.Module):
    """Attention pooling of text tokens into one vector (Imagen section 2.2, as in CLIP's pooling head):
    the query is the masked mean token plus a learned query. `(B, L, D), (B, L) -> (B, out_dim)`."""

    def __init__(self, dim: int, out_dim: int, head_dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.attn = CrossAttention(dim, dim, head_dim)
        nn.init.normal_(self.attn.out.weight, std=dim ** -0.5)  # not zero: the pooled vector must carry text
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(tokens.dtype)[..., None]  # (B, L, 1)
        mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, D)
        query = (mean + self.query.to(tokens.dtype))[:, None, :]  # (B, 1, D)
        pooled = self.attn(query, tokens, mask)[:, 0]  # (B, D)
        return self.proj(self.norm(pooled))
