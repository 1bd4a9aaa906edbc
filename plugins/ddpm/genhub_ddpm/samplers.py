"""DDPM (ancestral), DDIM and DPM-Solver++ (2M) samplers, usable by any diffusion family.

The single-step math is exposed as pure functions (``ddpm_step``, ``ddim_step``)
so tests can compare one step against diffusers' ``DDPMScheduler.step`` /
``DDIMScheduler.step``. Both samplers walk the timesteps diffusers' schedulers
pick for the process's ``timestep_spacing`` and ``steps_offset``; by default
"leading" with offset 0: t = (steps-1)*r, ..., r, 0 with r = T // steps, stepping
from t to t - r. As in diffusers, DDPM steps to the next timestep of the list and
DDIM to t - T // steps (the same except for "linspace" and "trailing" spacings).

Noise is drawn from the request's ``NoiseSource`` (row i from seed i only), so a
sample does not depend on what it was batched with.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from hub.errors import InvalidArgument
from hub.model import NoiseSource, StepCallback, StepEvent, report_step
from hub.sampling import DiffusionProcess, ModelFn, Sampler, SamplerState

__all__ = ["DDIMSampler", "DDPMSampler", "DPMSolverSampler", "StepOutput", "ddim_step", "ddpm_step", "dpm_solver_step",
           "leading_timesteps", "sampling_timesteps"]


class StepOutput(NamedTuple):
    prev_sample: torch.Tensor  # x_{prev_t}, same shape as x_t
    pred_x0: torch.Tensor  # the x0 estimate this step used (clipped if the process clips)


def leading_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """Descending timesteps of a ``steps``-step schedule, "leading" spacing, offset 0 (diffusers' default)."""
    if not 1 <= steps <= num_timesteps:
        raise InvalidArgument("steps", f"must be between 1 and {num_timesteps}, got {steps}")
    ratio = num_timesteps // steps
    return [i * ratio for i in reversed(range(steps))]


def sampling_timesteps(process: DiffusionProcess, steps: int) -> list[int]:
    """Descending timesteps of a ``steps``-step schedule, as diffusers' ``set_timesteps`` for the process's spacing."""
    T = process.num_timesteps
    if process.timestep_spacing == "leading":
        timesteps = [t + process.steps_offset for t in leading_timesteps(T, steps)]
    elif not 1 <= steps <= T:
        raise InvalidArgument("steps", f"must be between 1 and {T}, got {steps}")
    elif process.timestep_spacing == "trailing":  # numpy, so rounding ties break exactly as in diffusers
        timesteps = (np.round(np.arange(T, 0, -T / steps)).astype(np.int64) - 1).tolist()
    else:  # "linspace"
        timesteps = np.linspace(0, T - 1, steps).round()[::-1].astype(np.int64).tolist()
    if timesteps[0] >= T:
        raise InvalidArgument(
            "steps", f"{steps} steps with steps_offset={process.steps_offset} start at t={timesteps[0]}, past T={T}; use fewer steps"
        )
    return timesteps


def _abar(process: DiffusionProcess, t: int, final: float = 1.0) -> float:
    """alpha-bar at t as a Python float (float64); ``final`` before the start (t < 0): 1.0 is clean data."""
    return float(process.alphas_cumprod[t]) if t >= 0 else final


def ddpm_step(
    process: DiffusionProcess,
    model_output: torch.Tensor,
    t: int,
    prev_t: int,
    x_t: torch.Tensor,
    noise: torch.Tensor | None,
) -> StepOutput:
    """One ancestral step x_t -> x_{prev_t} with the "fixed_small" (posterior) variance.

    ``noise`` ([N, ...] standard normal) is added unless prev_t < 0 (the last step), where it may be None.
    """
    a_t, a_prev = _abar(process, t), _abar(process, prev_t)
    alpha = a_t / a_prev  # of the (possibly strided) step t -> prev_t
    beta = 1.0 - alpha
    x0, _ = process.split(model_output, x_t, t)
    # Posterior mean of q(x_prev | x_t, x0), eq. (7) of Ho et al. 2020 with strided alphas.
    coef_x0 = a_prev**0.5 * beta / (1.0 - a_t)
    coef_xt = alpha**0.5 * (1.0 - a_prev) / (1.0 - a_t)
    prev = coef_x0 * x0 + coef_xt * x_t
    if prev_t >= 0:
        if noise is None:
            raise ValueError(f"ddpm_step from t={t} to prev_t={prev_t} needs noise shaped like x_t {tuple(x_t.shape)}")
        variance = max((1.0 - a_prev) / (1.0 - a_t) * beta, 1e-20)  # floor as diffusers does, for t where it is ~0
        prev = prev + variance**0.5 * noise
    return StepOutput(prev, x0)


def ddim_step(
    process: DiffusionProcess,
    model_output: torch.Tensor,
    t: int,
    prev_t: int,
    x_t: torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> StepOutput:
    """One DDIM step x_t -> x_{prev_t} (Song et al. 2021, eq. 12); ``eta`` 0 is deterministic, 1 is DDPM-like.

    ``noise`` ([N, ...] standard normal) is needed when eta > 0 and the step's sigma is not zero.
    """
    a_t, a_prev = _abar(process, t), _abar(process, prev_t, process.final_alpha_cumprod)
    x0, eps = process.split(model_output, x_t, t)
    sigma = eta * ((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)) ** 0.5
    # max(): with eta <= 1 the radicand is >= 0 in exact arithmetic; guard the rounding.
    direction = max(1.0 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    prev = a_prev**0.5 * x0 + direction
    if sigma > 0:
        if noise is None:
            raise ValueError(f"ddim_step with eta={eta} from t={t} needs noise shaped like x_t {tuple(x_t.shape)}")
        prev = prev + sigma * noise
    return StepOutput(prev, x0)


def _log_snr_half(process: DiffusionProcess, t: int) -> float:
    """lambda_t = log(alpha_t / sigma_t), half the log signal-to-noise ratio (DPM-Solver's time variable)."""
    a = _abar(process, t)
    return 0.5 * (math.log(a) - math.log1p(-a))


def dpm_solver_step(
    process: DiffusionProcess,
    model_output: torch.Tensor,
    t: int,
    prev_t: int,
    x_t: torch.Tensor,
    previous: tuple[torch.Tensor, int] | None = None,
) -> StepOutput:
    """One DPM-Solver++ step x_t -> x_{prev_t} (Lu et al. 2022, the data-prediction multistep solver of order 2).

    ``previous`` is (x0 estimate, timestep) of the step before, which makes the step second order; None (the first
    step) is first order, which is DDIM's step. The last step (prev_t < 0, to clean data) is first order as well: it
    returns the x0 estimate, which few-step sampling needs for stability (diffusers' ``lower_order_final``).
    """
    x0, _ = process.split(model_output, x_t, t)
    if prev_t < 0:
        return StepOutput(x0, x0)
    a_t, a_prev = _abar(process, t), _abar(process, prev_t)
    h = _log_snr_half(process, prev_t) - _log_snr_half(process, t)
    target = x0
    if previous is not None:
        x0_before, t_before = previous
        r = (_log_snr_half(process, t) - _log_snr_half(process, t_before)) / h
        target = x0 + (x0 - x0_before) / (2.0 * r)  # the x0 estimate extrapolated to the step's midpoint
    sigma_ratio = ((1.0 - a_prev) / (1.0 - a_t)) ** 0.5
    prev = sigma_ratio * x_t - a_prev**0.5 * math.expm1(-h) * target
    return StepOutput(prev, x0)


class _StridedState(SamplerState):
    """Where a strided loop stands: x_t, the next timestep, and the step function of its sampler."""

    def __init__(self, sampler: _StridedSampler, process: DiffusionProcess, x_T: torch.Tensor, steps: int,
                 noise: NoiseSource, eta: float) -> None:
        self.sampler, self.process, self.noise, self.eta = sampler, process, noise, eta
        self.x, self.total, self.done = x_T, steps, 0
        self.timesteps = sampling_timesteps(process, steps)
        self.previous: tuple[torch.Tensor, int] | None = None  # the last step's (x0 estimate, timestep): multistep solvers

    def timestep(self) -> int:
        return self.timesteps[self.done]

    def step(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.shape != self.x.shape:
            raise ValueError(f"model_fn returned shape {tuple(model_output.shape)} for input {tuple(self.x.shape)}; they must match")
        t = self.timestep()
        prev_t = self.sampler._prev(self.timesteps, self.done, self.process)
        self.x, x0 = self.sampler._step(self.process, model_output, t, prev_t, self.x, self.eta, self.noise, self.previous)
        self.previous = (x0, t)
        self.done += 1
        return x0


class _StridedSampler(Sampler):
    """The loop both samplers share: strided timesteps, one network pass per step, progress after each."""

    def _step(
        self, process: DiffusionProcess, out: torch.Tensor, t: int, prev_t: int, x: torch.Tensor, eta: float, noise: NoiseSource,
        previous: tuple[torch.Tensor, int] | None,
    ) -> StepOutput:
        raise NotImplementedError

    def _check_eta(self, eta: float) -> None:
        raise NotImplementedError

    def _prev(self, timesteps: list[int], i: int, process: DiffusionProcess) -> int:
        """The timestep step i lands on (< 0: clean data)."""
        raise NotImplementedError

    def start(
        self, process: DiffusionProcess, x_T: torch.Tensor, *, steps: int, noise: NoiseSource, eta: float = 0.0
    ) -> _StridedState:
        self.check_steps(steps, process)
        self._check_eta(eta)
        if len(noise) != x_T.shape[0]:
            raise ValueError(f"noise source has {len(noise)} seeds for a batch of {x_T.shape[0]}; give one seed per sample")
        return _StridedState(self, process, x_T, steps, noise, eta)

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
        """Denoise ``x_T`` ([N, ...]) in ``steps`` network passes; return x_0 ([N, ...])."""
        if preview_every < 0:
            raise InvalidArgument("preview_every", f"must be >= 0 (0: no previews), got {preview_every}")
        state = self.start(process, x_T, steps=steps, noise=noise, eta=eta)
        with torch.no_grad():  # no_grad, not inference_mode: callers may modify the result in place
            while not state.finished:
                t_batch = torch.full((state.x.shape[0],), state.timestep(), dtype=torch.long, device=state.x.device)  # [N]
                x0 = state.step(model_fn(state.x, t_batch))
                preview = x0 if preview_every and state.done % preview_every == 0 else None
                report_step(callback, StepEvent(state.done, steps, preview))
        return state.x


class _NextTimestepSampler(_StridedSampler):
    """A sampler without eta whose every step lands on the next timestep of the list (the last on clean data)."""

    def _check_eta(self, eta: float) -> None:
        if eta != 0.0:
            raise InvalidArgument("eta", f"the {self.name!r} sampler has no eta (got {eta}); leave it at 0 or use sampler 'ddim'")

    def _prev(self, timesteps: list[int], i: int, process: DiffusionProcess) -> int:
        return timesteps[i + 1] if i + 1 < len(timesteps) else -1  # DDPMScheduler.previous_timestep


class DDPMSampler(_NextTimestepSampler):
    """Ancestral sampling (Ho et al. 2020), "fixed_small" variance; fewer steps than T stride the chain."""

    name = "ddpm"
    description = "DDPM ancestral sampling, fixed-small variance; best with steps = T (usually 1000)"
    default_steps = 1000

    def _step(
        self, process: DiffusionProcess, out: torch.Tensor, t: int, prev_t: int, x: torch.Tensor, eta: float, noise: NoiseSource,
        previous: tuple[torch.Tensor, int] | None,
    ) -> StepOutput:
        z = noise.randn_like(x) if prev_t >= 0 else None
        return ddpm_step(process, out, t, prev_t, x, z)


class DDIMSampler(_StridedSampler):
    """DDIM (Song et al. 2021): deterministic at eta 0, any number of steps."""

    name = "ddim"
    description = "DDIM; eta=0 deterministic, eta=1 DDPM-like; good samples in 20-100 steps"
    default_steps = 50

    def _check_eta(self, eta: float) -> None:
        if not 0.0 <= eta <= 1.0:
            raise InvalidArgument("eta", f"must be between 0 and 1 for sampler 'ddim', got {eta}")

    def _prev(self, timesteps: list[int], i: int, process: DiffusionProcess) -> int:
        return timesteps[i] - process.num_timesteps // len(timesteps)  # DDIMScheduler.step

    def _step(
        self, process: DiffusionProcess, out: torch.Tensor, t: int, prev_t: int, x: torch.Tensor, eta: float, noise: NoiseSource,
        previous: tuple[torch.Tensor, int] | None,
    ) -> StepOutput:
        # Draw only when the step adds noise: sigma is 0 for eta 0 and on the last step.
        z = noise.randn_like(x) if eta > 0 and prev_t >= 0 else None
        return ddim_step(process, out, t, prev_t, x, eta, z)


class DPMSolverSampler(_NextTimestepSampler):
    """DPM-Solver++ (2M): deterministic, second order from the second step; good samples in 5-20 steps.

    It walks the process's timestep spacing as the other samplers do; few steps need "trailing" spacing, which
    starts at t = T - 1 (with "leading", 4 steps start at t = 750, where x_T is not yet pure noise).
    """

    name = "dpmpp-2m"
    description = "DPM-Solver++ (2M), deterministic multistep ODE solver; good samples in 5-20 steps"
    default_steps = 20

    def _step(
        self, process: DiffusionProcess, out: torch.Tensor, t: int, prev_t: int, x: torch.Tensor, eta: float, noise: NoiseSource,
        previous: tuple[torch.Tensor, int] | None,
    ) -> StepOutput:
        return dpm_solver_step(process, out, t, prev_t, x, previous)
