"""An MLP denoiser for low-dimensional point data ([N, 2]), e.g. 2D toy mixtures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hub.layers import encoded_width, fourier_encode

from genhub_ddpm.embeddings import ConditionEmbedding


class _MLPBlock(nn.Module):
    """Residual: h + W2 silu(W1 silu(LN(h)) + emb)."""

    def __init__(self, hidden: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)  # start as the identity
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # h: [N, hidden], emb: [N, E]
        z = self.fc1(F.silu(self.norm(h))) + self.emb(F.silu(emb))
        return h + self.fc2(F.silu(z))


class MLPDenoiser(nn.Module):
    """([N, D] points, [N] timesteps, [N] labels?) -> [N, D]."""

    def __init__(self, dim: int = 2, hidden: int = 128, num_blocks: int = 3, num_classes: int = 0,
                 fourier_octaves: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.fourier_octaves = fourier_octaves
        self.embed = ConditionEmbedding(hidden, hidden, num_classes)
        self.fc_in = nn.Linear(encoded_width(dim, fourier_octaves), hidden)
        self.blocks = nn.ModuleList(_MLPBlock(hidden, hidden) for _ in range(num_blocks))
        self.norm_out = nn.LayerNorm(hidden)
        self.fc_out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"MLPDenoiser expects points [N, {self.dim}], got shape {tuple(x.shape)}")
        emb = self.embed(t, class_labels)  # [N, hidden]
        h = self.fc_in(fourier_encode(x, self.fourier_octaves))
        for block in self.blocks:
            h = block(h, emb)
        return self.fc_out(F.silu(self.norm_out(h)))
