"""Time (and class) embeddings shared by the UNet and the MLP denoiser."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of integer timesteps: [N] -> [N, dim] (cos half, then sin half)."""
    if t.dim() != 1:
        raise ValueError(f"timesteps must be [N], got shape {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # [N, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:  # odd widths: pad one zero column so the output is exactly [N, dim]
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class ConditionEmbedding(nn.Module):
    """Sinusoid -> MLP time embedding, plus a learned class embedding when ``num_classes`` > 0.

    Class index ``num_classes`` is the "null" class: the unconditional model that
    classifier-free guidance contrasts against (trained by dropping labels).
    """

    def __init__(self, freq_dim: int, emb_dim: int, num_classes: int = 0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.num_classes = num_classes
        self.mlp = nn.Sequential(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """[N] timesteps (and [N] labels in [0, num_classes], num_classes = null) -> [N, emb_dim]."""
        emb = self.mlp(timestep_embedding(t, self.freq_dim))
        if self.class_emb is not None:
            if class_labels is None:
                class_labels = torch.full_like(t, self.null_class, dtype=torch.long)
            emb = emb + self.class_emb(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels given to a network built with num_classes=0")
        return emb
