"""Noise schedules: betas -> alphas_cumprod for ``hub.sampling.DiffusionProcess``.

The two schedules match diffusers' ``DDPMScheduler`` so checkpoints and tests can
be compared against it: "linear" is ``beta_schedule="linear"`` (Ho et al. 2020)
and "cosine" is ``beta_schedule="squaredcos_cap_v2"`` (Nichol & Dhariwal 2021).
We compute in float64 (the contract asks for it); diffusers uses float32.
"""

from __future__ import annotations

import math

import torch

from hub.errors import InvalidArgument
from hub.sampling import DiffusionProcess

BETA_SCHEDULES = ("linear", "cosine")
MAX_BETA = 0.999  # the cosine schedule's cap: beta_T -> 1 would make x_T carry no signal but divide by ~0


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Betas evenly spaced from ``beta_start`` to ``beta_end``, [T] float64."""
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, offset: float = 0.008, max_beta: float = MAX_BETA) -> torch.Tensor:
    """Betas from alpha-bar(s) = cos^2((s + offset) / (1 + offset) * pi / 2), s in [0, 1]; [T] float64."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2

    # beta_i = 1 - abar((i+1)/T) / abar(i/T): the ratio keeps the discrete cumprod on the curve.
    betas = [min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def make_betas(schedule: str, num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """[T] float64 betas of the named schedule."""
    if num_timesteps < 1:
        raise InvalidArgument("num_timesteps", f"must be >= 1, got {num_timesteps}")
    if schedule == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise InvalidArgument(
                "beta_start", f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
            )
        return linear_betas(num_timesteps, beta_start, beta_end)
    if schedule == "cosine":
        return cosine_betas(num_timesteps)
    raise InvalidArgument("beta_schedule", f"{schedule!r} is not one of {list(BETA_SCHEDULES)}")


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """alpha-bar_t = prod_{s<=t} (1 - beta_s); [T] float64, decreasing."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def make_process(
    schedule: str,
    num_timesteps: int,
    prediction_type: str = "epsilon",
    clip_sample: float | None = 1.0,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    timestep_spacing: str = "leading",
) -> DiffusionProcess:
    """The ``DiffusionProcess`` a sampler needs, built from a named schedule."""
    betas = make_betas(schedule, num_timesteps, beta_start, beta_end)
    return DiffusionProcess(alphas_cumprod(betas), prediction_type=prediction_type, clip_sample=clip_sample,
                            timestep_spacing=timestep_spacing)
