"""The few-step diffusion process against direct Gaussian formulas."""

from __future__ import annotations

import math

import pytest
import torch

from genhub_ddgan.process import FewStepProcess, vp_alphas_cumprod
from hub.errors import InvalidArgument


def test_vp_schedule_starts_clean_decreases_and_ends_near_pure_noise() -> None:
    abar = vp_alphas_cumprod(4)
    assert abar.shape == (5,) and float(abar[0]) == 1.0
    assert bool((abar[1:] < abar[:-1]).all())
    assert float(abar[-1]) < 1e-3  # x_T carries almost no signal, so x_T ~ N(0, I) is a fair start
    s = torch.tensor([1e-3, 1.0], dtype=torch.float64)  # the SDE's alpha-bar at the first and last time
    direct = torch.exp(-(0.1 * s + 0.5 * 19.9 * s**2))
    torch.testing.assert_close(abar[-1], direct[1] / direct[0])
    with pytest.raises(InvalidArgument, match="beta_min"):
        vp_alphas_cumprod(4, beta_min=5.0, beta_max=1.0)


def test_betas_compose_to_alpha_bar() -> None:
    proc = FewStepProcess.vp(6)
    torch.testing.assert_close(torch.cumprod(1 - proc.betas, 0), proc.alphas_cumprod)


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_posterior_matches_bayes_rule_for_gaussians(t: int) -> None:
    """q(x_{t-1} | x_t, x_0) from prior q(x_{t-1} | x_0) = N(sqrt(abar') x0, 1 - abar') and likelihood
    q(x_t | x_{t-1}) = N(sqrt(1 - beta) x_{t-1}, beta): precisions add, means weight by precision."""
    proc = FewStepProcess.vp(4)
    g = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    abar_prev = float(proc.alphas_cumprod[t - 1])
    beta = 1 - float(proc.alphas_cumprod[t]) / abar_prev
    if t == 1:  # the prior is a point mass at x0: the posterior is x0 itself
        want_mean, want_var = x0, 0.0
    else:
        precision = (1 - beta) / beta + 1 / (1 - abar_prev)
        want_var = 1 / precision
        want_mean = want_var * (math.sqrt(1 - beta) * x_t / beta + math.sqrt(abar_prev) * x0 / (1 - abar_prev))
    mean, var = proc.posterior(x0, x_t, torch.full((5,), t))
    torch.testing.assert_close(mean, want_mean)
    torch.testing.assert_close(var.flatten()[0].item(), want_var, rtol=1e-9, atol=1e-12)


def test_pairs_have_the_forward_marginals() -> None:
    proc = FewStepProcess.vp(4)
    g = torch.Generator().manual_seed(1)
    n, t = 200_000, 3
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    x_prev, x_t = proc.q_sample_pair(x0, torch.full((n,), t), torch.randn(n, 1, generator=g, dtype=torch.float64),
                                     torch.randn(n, 1, generator=g, dtype=torch.float64))
    for x, s in ((x_prev, t - 1), (x_t, t)):
        abar = float(proc.alphas_cumprod[s])
        assert abs(float(x.mean()) - math.sqrt(abar) * 0.7) < 0.01
        assert abs(float(x.var()) - (1 - abar)) < 0.01


def test_posterior_sampling_needs_no_noise_only_at_the_last_step() -> None:
    proc = FewStepProcess.vp(4)
    x0, x_t = torch.randn(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(proc.posterior_sample(x0, x_t, torch.ones(2, dtype=torch.long), None), x0)
    with pytest.raises(ValueError, match="needs noise"):
        proc.posterior_sample(x0, x_t, torch.full((2,), 2), None)
    with pytest.raises(ValueError, match="timesteps must be"):
        proc.posterior(x0, x_t, torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("t", [2, 3, 4])
def test_ddim_step_with_the_true_x0_lands_on_the_same_noise_one_step_earlier(t: int) -> None:
    proc = FewStepProcess.vp(4)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    steps = torch.full((4,), t)
    x_t = proc.q_sample(x0, steps, eps)
    torch.testing.assert_close(proc.ddim_step(x0, x_t, steps), proc.q_sample(x0, steps - 1, eps))


def test_time_power_moves_the_levels_towards_the_data() -> None:
    even, skewed = vp_alphas_cumprod(4), vp_alphas_cumprod(4, time_power=2.0)
    torch.testing.assert_close(skewed[[0, 2, 4]], even[[0, 1, 4]])  # (2/4)^2 = 1/4: level 2 sits where level 1 was
    assert float(skewed[1]) > 0.95 > float(even[1])  # the last step starts at noise std 0.21, not 0.69
    with pytest.raises(InvalidArgument, match="time_power"):
        vp_alphas_cumprod(4, time_power=0.0)


def test_x0_between_two_states_is_what_the_ddim_step_needs() -> None:
    proc = FewStepProcess.vp(4, time_power=2.0)
    gen = torch.Generator().manual_seed(0)
    x_t, x_prev = torch.randn(8, 2, generator=gen), torch.randn(8, 2, generator=gen)
    t = torch.tensor([1, 2, 3, 4, 1, 2, 3, 4])
    x0 = proc.ddim_x0_between(x_t, x_prev, t)
    torch.testing.assert_close(proc.ddim_step(x0, x_t, t), x_prev)
    torch.testing.assert_close(x0[t == 1], x_prev[t == 1])  # the last step lands on x_0 itself
