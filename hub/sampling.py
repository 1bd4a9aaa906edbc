"""The contract between diffusion families and samplers.

A sampler is a plugin point of its own: one plugin's DDIM serves every
diffusion family. A family hands a sampler its network as a ``ModelFn`` and its
noise schedule as a ``DiffusionProcess``; the sampler runs the reverse loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch

from hub.errors import InvalidArgument, NotFound
from hub.model import NoiseSource, StepCallback

# model_fn(x_t [N, ...], t [N] int64 timesteps in [0, T)) -> network output, same shape as x_t
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")  # diffusers' names for how a sampler strides [0, T)


@dataclass
class DiffusionProcess:
    """A discrete forward process: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""

    alphas_cumprod: torch.Tensor  # [T], float64 for accuracy, decreasing
    prediction_type: str = "epsilon"  # what the network outputs
    clip_sample: float | None = 1.0  # clamp x0 estimates to [-c, c]; None: no clamp
    # The rest follow diffusers' scheduler configs, so imported pipelines sample as they did there; the
    # defaults are what genhub's own families were trained and checked with.
    timestep_spacing: str = "leading"  # one of TIMESTEP_SPACINGS
    steps_offset: int = 0  # added to "leading" timesteps
    final_alpha_cumprod: float = 1.0  # DDIM's alpha-bar after its last step (set_alpha_to_one=False: alphas_cumprod[0])
    # None: after clipping, re-derive epsilon from the clipped x0 for v/sample predictions only (genhub's rule);
    # True / False: always / never, as diffusers' DDIM ``use_clipped_model_output`` (its pipelines pass False).
    use_clipped_model_output: bool | None = None

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidArgument(
                "prediction_type", f"{self.prediction_type!r} is not one of {list(PREDICTION_TYPES)}"
            )
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise InvalidArgument(
                "timestep_spacing", f"{self.timestep_spacing!r} is not one of {list(TIMESTEP_SPACINGS)}"
            )

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def abar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar at t, broadcastable against ``like`` ([N, ...])."""
        t_tensor = torch.as_tensor(t, device=self.alphas_cumprod.device)
        a = self.alphas_cumprod[t_tensor].to(device=like.device, dtype=like.dtype)
        if a.dim() == 0:
            return a
        return a.reshape(-1, *([1] * (like.dim() - 1)))

    def split(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 estimate, epsilon estimate) from the network's output at x_t, t."""
        abar = self.abar(t, x_t)
        sa, s1 = abar.sqrt(), (1 - abar).sqrt()
        if self.prediction_type == "epsilon":
            eps = model_output
            x0 = (x_t - s1 * eps) / sa
        elif self.prediction_type == "v_prediction":
            x0 = sa * x_t - s1 * model_output
            eps = sa * model_output + s1 * x_t
        else:
            x0 = model_output
            eps = (x_t - sa * x0) / s1
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
            rederive = self.use_clipped_model_output
            if rederive if rederive is not None else self.prediction_type != "epsilon":
                eps = (x_t - sa * x0) / s1
        return x0, eps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network should output for this (x0, noise, t): its training target."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        abar = self.abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0


class Sampler(ABC):
    """A reverse-diffusion loop. Registered by plugins through ``register_samplers``."""

    name: str
    description: str = ""
    default_steps: int = 50

    @abstractmethod
    def sample(
        self,
        model_fn: ModelFn,
        process: DiffusionProcess,
        x_T: torch.Tensor,
        *,
        steps: int,
        noise: NoiseSource,
        eta: float = 0.0,
        callback: StepCallback | None = None,
        preview_every: int = 0,
    ) -> torch.Tensor:
        """Denoise ``x_T`` ([N, ...]) in ``steps`` network passes; return x_0.

        After each step, report ``StepEvent(step, steps, preview)`` through
        ``hub.model.report_step`` (which stops the loop if the callback says so);
        ``preview`` is the current x0 estimate every ``preview_every`` steps, else None.
        """

    def check_steps(self, steps: int, process: DiffusionProcess) -> None:
        if not 1 <= steps <= process.num_timesteps:
            raise InvalidArgument("steps", f"must be between 1 and {process.num_timesteps} for sampler {self.name!r}, got {steps}")


class SamplerRegistry:
    """Samplers by name, as registered by plugins."""

    def __init__(self, samplers: dict[str, Sampler] | None = None) -> None:
        self._samplers: dict[str, Sampler] = dict(samplers or {})

    def add(self, sampler: Sampler) -> None:
        self._samplers[sampler.name] = sampler

    def get(self, name: str) -> Sampler:
        try:
            return self._samplers[name]
        except KeyError:
            raise NotFound(f"no sampler named {name!r}; available: {sorted(self._samplers)}") from None

    def names(self) -> list[str]:
        return sorted(self._samplers)

    def __contains__(self, name: object) -> bool:
        return name in self._samplers
