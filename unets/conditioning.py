"""Conditioning of the Efficient U-Net: scalar embeddings (timestep, noise-augmentation level) and the
text path (LayerNorm, projection, learned null condition, attention pooling).

Imagen section 2.2 / appendix B: the time embedding plus an attention-pooled text vector form the
conditioning vector of every residual block; the text tokens are the keys and values of cross-attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionPool, TextCondition

NUM_NULL_TOKENS = 4  # learned token embeddings that stand in for the text of dropped (unconditional) rows


def sinusoidal_embedding(values: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of `values (B,)` -> `(B, dim)` float32 ([cos | sin])."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class ScalarEmbedding(nn.Module):
    """A scalar in [0, 1] (diffusion time t or augmentation level) -> `(B, out_dim)`: scaled by 1000,
    sinusoidal features of width `freq_dim`, then Linear -> SiLU -> Linear (DDPM / Imagen)."""

    def __init__(self, freq_dim: int, out_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """values (B,) in [0, 1] -> (B, out_dim)."""
        features = sinusoidal_embedding(values.float() * 1000.0, self.freq_dim)  # float32: t needs the precision
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class TextConditioner(nn.Module):
    """Turns T5 token embeddings into cross-attention context and a pooled vector, with a learned null
    condition for classifier-free guidance: rows that are dropped, have no real token, or have no text at all
    get `NUM_NULL_TOKENS` learned tokens as context and a learned null pooled vector."""

    def __init__(self, text_dim: int, context_dim: int, cond_dim: int, head_dim: int, *,
                 layernorm: bool = True, pooled: bool = True):
        super().__init__()
        self.text_dim, self.cond_dim = text_dim, cond_dim
        self.norm = nn.LayerNorm(text_dim) if layernorm else nn.Identity()
        self.proj = nn.Linear(text_dim, context_dim)
        self.null_tokens = nn.Parameter(torch.randn(NUM_NULL_TOKENS, context_dim) * 0.02)
        self.pool = AttentionPool(context_dim, cond_dim, head_dim) if pooled else None
        self.null_pooled = nn.Parameter(torch.randn(cond_dim) * 0.02) if pooled else None

    def forward(self, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None,
                drop_text: torch.Tensor | None, batch: int) -> TextCondition:
        """text_embeds (B, L, text_dim) or None (every row unconditional); text_mask (B, L) bool or None
        (all real); drop_text (B,) bool or None -> TextCondition."""
        device = self.null_tokens.device
        if text_embeds is None:
            null = torch.ones(batch, dtype=torch.bool, device=device)
            context = self.null_tokens.expand(batch, -1, -1)
            mask = torch.ones(batch, NUM_NULL_TOKENS, dtype=torch.bool, device=device)
        else:
            self._check(text_embeds, text_mask, drop_text, batch)
            length = text_embeds.shape[1]
            if text_mask is None:
                text_mask = torch.ones(batch, length, dtype=torch.bool, device=text_embeds.device)
            text_mask = text_mask.bool()
            null = ~text_mask.any(dim=1)
            if drop_text is not None:
                null = null | drop_text.bool()
            context = self.proj(self.norm(text_embeds.to(self.proj.weight.dtype)))
            context, mask = self._substitute_null(context, text_mask, null)
        pooled = self._pool(context, mask, null)
        return TextCondition(context, mask, pooled)

    def _substitute_null(self, context: torch.Tensor, mask: torch.Tensor,
                         null: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the tokens of rows where `null (B,)` is True by the learned null tokens (padding both
        to a common length with masked-out positions)."""
        batch, length, dim = context.shape
        total = max(length, NUM_NULL_TOKENS)
        context = F.pad(context, (0, 0, 0, total - length))
        mask = F.pad(mask, (0, total - length), value=False)
        null_context = F.pad(self.null_tokens.to(context.dtype), (0, 0, 0, total - NUM_NULL_TOKENS))
        null_mask = torch.arange(total, device=mask.device) < NUM_NULL_TOKENS
        context = torch.where(null[:, None, None], null_context[None], context)
        mask = torch.where(null[:, None], null_mask[None], mask)
        return context, mask

    def _pool(self, context: torch.Tensor, mask: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return torch.zeros(context.shape[0], self.cond_dim, device=context.device, dtype=context.dtype)
        pooled = self.pool(context, mask)  # branch-free (a compiled U-Net keeps one graph); null rows replaced
        return torch.where(null[:, None], self.null_pooled.to(pooled.dtype), pooled)

    def _check(self, text_embeds: torch.Tensor, text_mask: torch.Tensor | None, drop_text: torch.Tensor | None,
               batch: int) -> None:
        if text_embeds.dim() != 3 or text_embeds.shape[0] != batch or text_embeds.shape[2] != self.text_dim:
            raise ValueError(f"text_embeds must be (B={batch}, L, text_dim={self.text_dim}), "
                             f"got {tuple(text_embeds.shape)}")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text_embeds.shape[:2]):
            raise ValueError(f"text_mask must be (B, L) = {tuple(text_embeds.shape[:2])}, got {tuple(text_mask.shape)}")
        if drop_text is not None and tuple(drop_text.shape) != (batch,):
            raise ValueError(f"drop_text must be (B,) = ({batch},), got {tuple(drop_text.shape)}")
