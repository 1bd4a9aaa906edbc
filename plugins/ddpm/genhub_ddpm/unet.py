"""A compact DDPM UNet (after Ho et al. 2020), sized for small images on a CPU.

Levels of residual blocks (GroupNorm + SiLU, time embedding added between the
two convolutions), a stride-2 downsample between levels, a middle of
ResBlock-Attention-ResBlock at the lowest resolution, and a mirrored decoder
that consumes the encoder's skips. Optional attention at further resolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genhub_ddpm.embeddings import ConditionEmbedding


def norm_groups(channels: int) -> int:
    """GroupNorm groups: as many as possible up to 32, keeping at least 4 channels per group."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: a residual branch then starts as the identity, which trains stably."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(norm_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x: [N, C_in, H, W], emb: [N, E] -> [N, C_out, H, W]
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            self.heads = 1
        self.norm = nn.GroupNorm(norm_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape  # [N, C, H, W]
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # each [N, heads, HW, C/heads]
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """The blocks of one resolution (encoder or decoder side)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()  # one per block; Identity where the level has no attention
        self.resample: nn.Module = nn.Identity()


class UNet(nn.Module):
    """eps/v-predicting UNet: ([N, C, H, W], [N] timesteps, [N] labels?) -> [N, C, H, W]."""

    def __init__(
        self,
        in_channels: int,
        resolution: int,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (),
        num_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        levels = len(channel_mults)
        if resolution % (2 ** (levels - 1)):
            raise ValueError(
                f"resolution {resolution} is not divisible by 2**{levels - 1} for {levels} levels; "
                f"use fewer channel_mults or a resolution divisible by {2 ** (levels - 1)}"
            )
        emb_dim = 4 * base_channels
        self.in_channels = in_channels
        self.embed = ConditionEmbedding(base_channels, emb_dim, num_classes)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        def attn(ch: int, res: int) -> nn.Module:
            return SelfAttention(ch) if res in attention_resolutions else nn.Identity()

        # Encoder: remember each output's width, the decoder concatenates them back in reverse.
        skips = [base_channels]
        ch, res = base_channels, resolution
        self.down = nn.ModuleList()
        for i, mult in enumerate(channel_mults):
            level = _Level()
            for _ in range(num_res_blocks):
                level.blocks.append(ResBlock(ch, base_channels * mult, emb_dim, dropout))
                ch = base_channels * mult
                level.attns.append(attn(ch, res))
                skips.append(ch)
            if i < levels - 1:
                level.resample = Downsample(ch)
                res //= 2
                skips.append(ch)
            self.down.append(level)

        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = SelfAttention(ch)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mults))):
            level = _Level()
            for _ in range(num_res_blocks + 1):
                level.blocks.append(ResBlock(ch + skips.pop(), base_channels * mult, emb_dim, dropout))
                ch = base_channels * mult
                level.attns.append(attn(ch, res))
            if i > 0:
                level.resample = Upsample(ch)
                res *= 2
            self.up.append(level)

        self.norm_out = nn.GroupNorm(norm_groups(ch), ch)
        self.conv_out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        # x: [N, C, H, W], t: [N] int64, class_labels: [N] int64 or None (unconditional)
        emb = self.embed(t, class_labels)  # [N, E]
        h = self.conv_in(x)
        hs = [h]
        for level in self.down:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h, emb))
                hs.append(h)
            if not isinstance(level.resample, nn.Identity):
                h = level.resample(h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level in self.up:
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            h = level.resample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
