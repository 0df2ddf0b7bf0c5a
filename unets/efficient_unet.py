"""The Efficient U-Net of Imagen (Saharia et al. 2022, appendix B), one class for the base and SR stages.

Layout, for levels i = 0 .. n-1 with channels c_i = channels * channel_mults[i] (c_-1 = channels):

    x (‖ lowres) -> conv3x3 -> [DownBlock_i: resample c_(i-1) -> c_i, ResBlock x n_i, attention] x n
                  -> [UpBlock_i: concat skip_i, ResBlock x n_i, attention, resample c_i -> c_(i-1)] x n (reversed)
                  -> (+ conv3x3 output, the full-resolution skip) -> GroupNorm -> SiLU -> conv3x3 (zero-init)

`efficient_order=True` (the paper's Efficient U-Net): every DownBlock downsamples *before* its convolutions
and every UpBlock upsamples *after* them, so level i runs at H / 2^(i+1) and the only full-resolution work
is the input and output convolutions. `efficient_order=False` (the classic U-Net): level i runs at
H / 2^i; the same modules and nearly the same parameters (level 0's resampling convolutions keep the
resolution).
Inputs must therefore be divisible by 2^n (efficient) or 2^(n-1) (classic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from configs import UNetConfig

from .attention import AttentionBlock, TextCondition
from .conditioning import ScalarEmbedding, TextConditioner
from .group_norm import GroupNorm
from .layers import SKIP_SCALE, Downsample, ResBlock, Upsample, group_count, zero_init
from .positions import coordinate_channels

IMAGE_CHANNELS = 3


class DownBlock(nn.Module):
    """Resample (stride 2 or 1) -> ResBlocks -> optional attention. `(B, C_in, H, W) -> (B, C, H/s, W/s)`."""

    def __init__(self, in_channels: int, channels: int, num_res_blocks: int, stride: int, *, cfg: UNetConfig,
                 context_dim: int, self_attn: bool, cross_attn: bool):
        super().__init__()
        self.resample = Downsample(in_channels, channels, stride)
        self.res_blocks = nn.ModuleList(
            ResBlock(channels, channels, cfg.cond_dim, dropout=cfg.dropout, scale_shift=cfg.scale_shift,
                     scale_skip=cfg.scale_skip) for _ in range(num_res_blocks))
        self.attn = (AttentionBlock(channels, context_dim=context_dim, head_dim=cfg.head_dim, self_attn=self_attn,
                                    cross_attn=cross_attn, position=cfg.position_embedding)
                     if self_attn or cross_attn else None)

    def forward(self, h: torch.Tensor, cond: torch.Tensor, text: TextCondition | None,
                checkpointing: bool = False) -> torch.Tensor:
        h = self.resample(h)
        for res in self.res_blocks:
            h = _run(res, checkpointing, h, cond)
        return h if self.attn is None else _run(self.attn, checkpointing, h, text)


class UpBlock(nn.Module):
    """Concat skip -> ResBlocks (the first maps 2C -> C) -> optional attention -> resample (x2 or x1).
    `(B, C, H, W), skip (B, C, H, W) -> (B, C_out, H*s, W*s)`. A level without residual blocks has no skip."""

    def __init__(self, channels: int, out_channels: int, num_res_blocks: int, factor: int, *, cfg: UNetConfig,
                 context_dim: int, self_attn: bool, cross_attn: bool):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResBlock(channels * (2 if i == 0 else 1), channels, cfg.cond_dim, dropout=cfg.dropout,
                     scale_shift=cfg.scale_shift, scale_skip=cfg.scale_skip) for i in range(num_res_blocks))
        self.attn = (AttentionBlock(channels, context_dim=context_dim, head_dim=cfg.head_dim, self_attn=self_attn,
                                    cross_attn=cross_attn, position=cfg.position_embedding)
                     if self_attn or cross_attn else None)
        self.resample = Upsample(channels, out_channels, factor)
        self.skip_scale = SKIP_SCALE if cfg.scale_skip else 1.0

    def forward(self, h: torch.Tensor, skip: torch.Tensor, cond: torch.Tensor, text: TextCondition | None,
                checkpointing: bool = False) -> torch.Tensor:
        if len(self.res_blocks) > 0:
            h = torch.cat([h, skip * self.skip_scale], dim=1)
        for res in self.res_blocks:
            h = _run(res, checkpointing, h, cond)
        if self.attn is not None:
            h = _run(self.attn, checkpointing, h, text)
        return self.resample(h)


def _run(module: nn.Module, checkpointing: bool, *args) -> torch.Tensor:
    """Call `module`, through activation checkpointing (recomputed in backward) when asked."""
    return checkpoint(module, *args, use_reentrant=False) if checkpointing else module(*args)


class EfficientUNet(nn.Module):
    """Imagen's Efficient U-Net for one stage of the cascade. Knows nothing about diffusion: it maps a noisy
    image, a time in [0, 1] and the conditioning to a `(B, 3, H, W)` output (eps, v or x0, as trained).

    Args:
        config: the architecture (per-level tuples run from the highest resolution down).
        text_dim: width D of the text encoder's token embeddings (T5-XXL: 4096).
        lowres_cond: a super-resolution stage, conditioned on an upsampled low-res image and its
            noise-augmentation level.
    """

    def __init__(self, config: UNetConfig, *, text_dim: int, lowres_cond: bool = False):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a configs.UNetConfig, got {type(config).__name__} "
                            "(build one with UNetConfig(...) or load a preset with configs.load_config)")
        if text_dim <= 0:
            raise ValueError(f"text_dim must be positive, got {text_dim}")
        self.config, self.text_dim, self.lowres_cond = config, text_dim, lowres_cond
        cfg = config
        levels = len(cfg.channel_mults)
        self.downsample_factor = 2 ** (levels if cfg.efficient_order else levels - 1)
        self.skip_scale = SKIP_SCALE if cfg.scale_skip else 1.0
        context_dim = cfg.cond_dim

        self.time_embed = ScalarEmbedding(cfg.channels, cfg.cond_dim)
        self.lowres_embed = ScalarEmbedding(cfg.channels, cfg.cond_dim) if lowres_cond else None
        uses_text = cfg.pooled_text or any(cfg.cross_attn)
        self.text = (TextConditioner(text_dim, context_dim, cfg.cond_dim, cfg.head_dim, layernorm=cfg.text_layernorm,
                                     pooled=cfg.pooled_text) if uses_text else None)

        # with position_embedding, two coordinate channels (x, y in [-1, 1]) join the input: every convolution
        # then knows where it is, as attention does through its position embedding
        in_channels = IMAGE_CHANNELS * (2 if lowres_cond else 1) + (2 if cfg.position_embedding else 0)
        self.in_conv = nn.Conv2d(in_channels, cfg.channels, 3, padding=1)
        widths = [cfg.channels] + [cfg.channels * m for m in cfg.channel_mults]  # widths[i] = c_(i-1)
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i in range(levels):
            stride = 2 if cfg.efficient_order or i > 0 else 1
            kwargs = dict(cfg=cfg, context_dim=context_dim, self_attn=cfg.self_attn[i], cross_attn=cfg.cross_attn[i])
            self.downs.append(DownBlock(widths[i], widths[i + 1], cfg.num_res_blocks[i], stride, **kwargs))
            self.ups.append(UpBlock(widths[i + 1], widths[i], cfg.num_res_blocks[i], stride, **kwargs))
        self.out_norm = GroupNorm(group_count(cfg.channels), cfg.channels)
        self.out_conv = zero_init(nn.Conv2d(cfg.channels, IMAGE_CHANNELS, 3, padding=1))
        # the cross-attention layers that read the text, each with its slot in TextCondition.keys_values
        self.text_readers = [m.cross_attn for m in self.modules() if isinstance(m, AttentionBlock)
                             and m.cross_attn is not None]
        for slot, reader in enumerate(self.text_readers):
            reader.slot = slot

    def encode_text(self, text_embeds: torch.Tensor | None, text_mask: torch.Tensor | None = None,
                    drop_text: torch.Tensor | None = None, batch: int | None = None, *,
                    keys_values: bool = False) -> TextCondition | None:
        """What the U-Net reads of the text (arguments as for `forward`; `batch` when `text_embeds` is None), or
        None for a U-Net that reads no text. With `keys_values`, also every text-reading cross-attention layer's
        keys and values: a sampling run encodes its text once and passes it to every step (`forward(text=...)`).
        Training leaves the projection to each layer (inside its sharding unit)."""
        if self.text is None:
            return None
        batch = text_embeds.shape[0] if text_embeds is not None else batch
        text = self.text(text_embeds, text_mask, drop_text, batch)
        if keys_values:
            text = text._replace(keys_values=tuple(reader.keys_values(text.context) for reader in self.text_readers))
        return text

    def forward(self, x: torch.Tensor, time: torch.Tensor, text_embeds: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None, drop_text: torch.Tensor | None = None,
                lowres: torch.Tensor | None = None, lowres_level: torch.Tensor | None = None,
                text: TextCondition | None = None) -> torch.Tensor:
        """x (B, 3, H, W) float; time (B,) in [0, 1]; text_embeds (B, L, text_dim) or None (unconditional);
        text_mask (B, L) bool, True = real token; drop_text (B,) bool, True = learned null condition;
        lowres (B, 3, H, W) in [-1, 1] and lowres_level (B,) in [0, 1] (SR stages only) -> (B, 3, H, W).
        `text`: the text already encoded by `encode_text`, instead of text_embeds / text_mask / drop_text."""
        self._check_inputs(x, time, lowres, lowres_level)
        if text is not None and text_embeds is not None:
            raise ValueError("pass the text either as text_embeds or already encoded as text, not both")
        x = x.to(self.in_conv.weight.dtype)  # the weights' precision (float32, or bfloat16 / float16 to sample)
        batch = x.shape[0]
        emb = self.time_embed(time)
        if self.lowres_cond:
            emb = emb + self.lowres_embed(lowres_level)
            x = torch.cat([x, lowres.to(x.dtype)], dim=1)
        if text is None:
            text = self.encode_text(text_embeds, text_mask, drop_text, batch)
        if text is not None and self.config.pooled_text:
            emb = emb + text.pooled.to(emb.dtype)
        cond = F.silu(emb)  # (B, cond_dim), shared by every ResBlock's FiLM layer

        checkpointing = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        if self.config.position_embedding:
            x = torch.cat([x, coordinate_channels(x)], dim=1)
        h = stem = self.in_conv(x)
        skips = []
        for block in self.downs:
            h = block(h, cond, text, checkpointing)
            skips.append(h)
        for block, skip in zip(reversed(self.ups), reversed(skips), strict=True):
            h = block(h, skip, cond, text, checkpointing)
        h = (h + stem) * self.skip_scale  # full-resolution skip around the whole U
        return self.out_conv(F.silu(self.out_norm(h)))

    def _check_inputs(self, x: torch.Tensor, time: torch.Tensor, lowres: torch.Tensor | None,
                      lowres_level: torch.Tensor | None) -> None:
        if x.dim() != 4 or x.shape[1] != IMAGE_CHANNELS:
            raise ValueError(f"x must be (B, {IMAGE_CHANNELS}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.downsample_factor or w % self.downsample_factor:
            raise ValueError(f"x is {h}x{w} but this U-Net downsamples by {self.downsample_factor}: "
                             f"use a size divisible by {self.downsample_factor}")
        if tuple(time.shape) != (x.shape[0],):
            raise ValueError(f"time must be (B,) = ({x.shape[0]},), got {tuple(time.shape)}")
        if self.lowres_cond:
            if lowres is None or lowres_level is None:
                raise ValueError("this is a super-resolution U-Net (lowres_cond=True): pass lowres (B, 3, H, W), "
                                 "the low-res image resized to x's size, and lowres_level (B,)")
            if tuple(lowres.shape) != tuple(x.shape):
                raise ValueError(f"lowres must be resized to x's shape {tuple(x.shape)}, got {tuple(lowres.shape)}")
            if tuple(lowres_level.shape) != (x.shape[0],):
                raise ValueError(f"lowres_level must be (B,) = ({x.shape[0]},), got {tuple(lowres_level.shape)}")
        elif lowres is not None or lowres_level is not None:
            raise ValueError("lowres / lowres_level given to a U-Net built with lowres_cond=False "
                             "(build it with lowres_cond=True for a super-resolution stage)")
