"""The few-step diffusion process of a Denoising Diffusion GAN (Xiao et al. 2022).

Steps are numbered t = 1..T (x_0 is data, x_T about pure noise); tensors indexed by t have T + 1 entries with
entry 0 meaning "clean" (alpha-bar_0 = 1, beta_0 = 0). The schedule discretises the variance-preserving SDE
(Song et al. 2021): alpha-bar(s) = exp(-(beta_min s + (beta_max - beta_min) s^2 / 2)) at T + 1 evenly spaced
times s in [eps, 1], renormalised so that x_0 is the data itself.
"""

from __future__ import annotations

import math

import torch

from hub.errors import InvalidArgument


def vp_alphas_cumprod(num_steps: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3,
                      time_power: float = 1.0) -> torch.Tensor:
    """[T + 1] float64 alpha-bar, entry 0 = 1, decreasing. Step k sits at time s = eps + (1 - eps) (k / T)^time_power:
    a power above 1 moves steps towards low noise, so the last step only sharpens (on a mixture of narrow modes it
    then snaps to the nearest mode instead of choosing one)."""
    if num_steps < 1:
        raise InvalidArgument("num_steps", f"must be >= 1, got {num_steps}")
    if not 0 < beta_min < beta_max:
        raise InvalidArgument("beta_min", f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
    if not 0.25 <= time_power <= 4.0:
        raise InvalidArgument("time_power", f"must be between 0.25 and 4 (1: evenly spaced steps), got {time_power}")
    s = eps + (1.0 - eps) * (torch.arange(num_steps + 1, dtype=torch.float64) / num_steps) ** time_power
    log_abar = -(beta_min * s + 0.5 * (beta_max - beta_min) * s**2)
    return torch.exp(log_abar - log_abar[0])


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] ([N]) shaped to broadcast against ``like`` ([N, ...]), in like's dtype and device."""
    return values.to(like.device)[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


class FewStepProcess:
    """q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) for t = 1..T, and its posterior."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        abar = alphas_cumprod.to(torch.float64)
        if abar.dim() != 1 or abar.shape[0] < 2 or float(abar[0]) != 1.0:
            raise ValueError(f"alphas_cumprod must be [T + 1] with entry 0 equal to 1, got {tuple(abar.shape)}")
        self.alphas_cumprod = abar  # [T + 1]
        self.betas = torch.cat([abar.new_zeros(1), 1.0 - abar[1:] / abar[:-1]])  # [T + 1], beta_0 = 0
        prev = torch.cat([abar.new_ones(1), abar[:-1]])  # alpha-bar_{t-1}
        # q(x_{t-1} | x_t, x_0) = N(c0 x_0 + ct x_t, var), Ho et al. 2020 eq. (6)-(7); t = 0 is unused.
        denom = (1.0 - abar).clamp_min(1e-20)
        self.coef_x0 = prev.sqrt() * self.betas / denom
        self.coef_xt = (1.0 - self.betas).sqrt() * (1.0 - prev) / denom
        self.posterior_var = self.betas * (1.0 - prev) / denom  # 0 at t = 1: x_0 is then the mean itself

    @classmethod
    def vp(cls, num_steps: int, beta_min: float = 0.1, beta_max: float = 20.0, time_power: float = 1.0) -> FewStepProcess:
        return cls(vp_alphas_cumprod(num_steps, beta_min, beta_max, time_power=time_power))

    @property
    def num_steps(self) -> int:
        return int(self.alphas_cumprod.shape[0]) - 1

    def check_t(self, t: torch.Tensor) -> None:
        if t.dim() != 1 or int(t.min()) < 1 or int(t.max()) > self.num_steps:
            raise ValueError(f"timesteps must be [N] in 1..{self.num_steps}, got {t.tolist()[:8]}")

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0): sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise. x0, noise: [N, ...]; t: [N] in 0..T."""
        abar = _at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def q_sample_pair(self, x0: torch.Tensor, t: torch.Tensor, noise1: torch.Tensor,
                      noise2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A joint draw (x_{t-1}, x_t): x_{t-1} ~ q(x_{t-1} | x_0), then x_t ~ q(x_t | x_{t-1}). t: [N] in 1..T."""
        self.check_t(t)
        x_prev = self.q_sample(x0, t - 1, noise1)
        beta = _at(self.betas, t, x0)
        return x_prev, (1.0 - beta).sqrt() * x_prev + beta.sqrt() * noise2

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of q(x_{t-1} | x_t, x_0); the variance broadcasts against x_t."""
        self.check_t(t)
        mean = _at(self.coef_x0, t, x_t) * x0 + _at(self.coef_xt, t, x_t) * x_t
        return mean, _at(self.posterior_var, t, x_t)

    def posterior_sample(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                         noise: torch.Tensor | None) -> torch.Tensor:
        """x_{t-1} ~ q(x_{t-1} | x_t, x_0): how a DDGAN's x_0 prediction reaches x_{t-1}. No noise needed at t = 1."""
        mean, var = self.posterior(x0, x_t, t)
        if noise is None:
            if bool((t > 1).any()):
                raise ValueError("posterior_sample needs noise shaped like x_t for steps t > 1")
            return mean
        return mean + var.sqrt() * noise

    def ddim_step(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The deterministic (eta = 0) move x_t -> x_{t-1} implied by an x_0 estimate (Song et al. 2021, eq. 12)."""
        abar_t, abar_prev = _at(self.alphas_cumprod, t, x_t), _at(self.alphas_cumprod, t - 1, x_t)
        eps = (x_t - abar_t.sqrt() * x0) / (1.0 - abar_t).clamp_min(1e-12).sqrt()
        return abar_prev.sqrt() * x0 + (1.0 - abar_prev).sqrt() * eps

    def ddim_x0_between(self, x_t: torch.Tensor, x_prev: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The x_0 estimate whose ``ddim_step`` from x_t lands exactly on x_prev: the target that makes a student's
        step t reproduce a teacher's move between the same two noise levels (Salimans & Ho 2022, eq. 8)."""
        abar_t, abar_prev = _at(self.alphas_cumprod, t, x_t), _at(self.alphas_cumprod, t - 1, x_t)
        b = (1.0 - abar_prev).sqrt() / (1.0 - abar_t).clamp_min(1e-12).sqrt()  # weight of x_t in ddim_step
        return (x_prev - b * x_t) / (abar_prev.sqrt() - b * abar_t.sqrt())


def describe_schedule(process: FewStepProcess) -> list[dict[str, float]]:
    """Per-step facts for describe(): alpha-bar and the posterior std of every step."""
    return [
        {"t": t, "alpha_bar": float(process.alphas_cumprod[t]), "posterior_std": math.sqrt(float(process.posterior_var[t]))}
        for t in range(1, process.num_steps + 1)
    ]
