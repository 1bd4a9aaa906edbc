"""Small network pieces that plugins share (the core stays free of any model family)."""

from __future__ import annotations

import torch


def fourier_encode(x: torch.Tensor, octaves: int) -> torch.Tensor:
    """Coordinates [N, D] -> [N, D (1 + 2 octaves)]: x, then sin and cos of x * 2^k for k < octaves.

    An MLP fed raw coordinates learns smooth functions first (spectral bias); on a grid of sharp modes (std 0.05,
    spacing 2) that leaves samples between the modes. Sines up to 2^(octaves - 1) radians per unit let it resolve
    them (Tancik et al. 2020, "Fourier features let networks learn high frequency functions in low dimensional
    domains"). ``octaves = 0`` returns x unchanged.
    """
    if x.dim() != 2:
        raise ValueError(f"fourier_encode expects coordinates [N, D], got shape {tuple(x.shape)}")
    if octaves < 0:
        raise ValueError(f"octaves must be >= 0, got {octaves}")
    if octaves == 0:
        return x
    scaled = x[:, :, None] * (2.0 ** torch.arange(octaves, device=x.device, dtype=x.dtype))  # [N, D, octaves]
    return torch.cat([x, scaled.sin().flatten(1), scaled.cos().flatten(1)], dim=1)


def encoded_width(dim: int, octaves: int) -> int:
    """Width of ``fourier_encode``'s output for D = ``dim``."""
    return dim * (1 + 2 * octaves)
