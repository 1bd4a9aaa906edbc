"""A latent UNet with cross-attention to a conditioning sequence (after Rombach et al. 2022).

The DDPM plugin's residual blocks and resamplers, with a transformer block after every residual
block: self-attention over the latent positions, cross-attention from them to the conditioning
tokens (keys and values from the text encoder, padding masked out), and a feed-forward layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genhub_ddpm.embeddings import ConditionEmbedding
from genhub_ddpm.unet import Downsample, ResBlock, Upsample, norm_groups


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class CrossAttentionBlock(nn.Module):
    """[N, C, H, W] latents attending to themselves and to [N, L, D] context; residual (starts as identity)."""

    def __init__(self, channels: int, context_dim: int, heads: int = 4) -> None:
        super().__init__()
        heads = heads if channels % heads == 0 else 1
        self.norm = nn.GroupNorm(norm_groups(channels), channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(channels), nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.self_attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(channels, heads, kdim=context_dim, vdim=context_dim, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))
        self.proj_out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # [N, HW, C]
        q = self.ln1(tokens)
        tokens = tokens + self.self_attn(q, q, q, need_weights=False)[0]
        tokens = tokens + self.cross_attn(self.ln2(tokens), context, context, key_padding_mask=~mask, need_weights=False)[0]
        tokens = tokens + self.ff(self.ln3(tokens))
        return x + self.proj_out(tokens.transpose(1, 2).reshape(n, c, h, w))


class LatentUNet(nn.Module):
    """(latents [N, C, H, W], timesteps [N], context [N, L, D], mask [N, L]) -> prediction [N, C, H, W]."""

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        context_dim: int,
        heads: int = 4,
    ) -> None:
        super().__init__()
        emb_dim = 4 * base_channels
        self.embed = ConditionEmbedding(base_channels, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        skips = [base_channels]
        ch = base_channels
        self.down_blocks, self.down_attn, self.down_resample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down_blocks.append(ResBlock(ch, base_channels * mult, emb_dim))
                ch = base_channels * mult
                self.down_attn.append(CrossAttentionBlock(ch, context_dim, heads))
                skips.append(ch)
            last = i == len(channel_mults) - 1
            self.down_resample.append(nn.Identity() if last else Downsample(ch))
            if not last:
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim)
        self.mid_attn = CrossAttentionBlock(ch, context_dim, heads)
        self.mid2 = ResBlock(ch, ch, emb_dim)
        self.up_blocks, self.up_attn, self.up_resample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up_blocks.append(ResBlock(ch + skips.pop(), base_channels * mult, emb_dim))
                ch = base_channels * mult
                self.up_attn.append(CrossAttentionBlock(ch, context_dim, heads))
            self.up_resample.append(Upsample(ch) if i > 0 else nn.Identity())
        self.num_res_blocks = num_res_blocks
        self.norm_out = nn.GroupNorm(norm_groups(ch), ch)
        self.conv_out = _zero(nn.Conv2d(ch, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t)
        h = self.conv_in(x)
        hs = [h]
        per = self.num_res_blocks
        for level, resample in enumerate(self.down_resample):
            for j in range(level * per, (level + 1) * per):
                h = self.down_attn[j](self.down_blocks[j](h, emb), context, mask)
                hs.append(h)
            if not isinstance(resample, nn.Identity):
                h = resample(h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), context, mask), emb)
        for level, resample in enumerate(self.up_resample):
            for j in range(level * (per + 1), (level + 1) * (per + 1)):
                h = self.up_attn[j](self.up_blocks[j](torch.cat([h, hs.pop()], dim=1), emb), context, mask)
            h = resample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
