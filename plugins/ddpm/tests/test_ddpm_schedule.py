"""The noise schedules against diffusers' DDPMScheduler."""

from __future__ import annotations

import pytest
import torch

from hub.errors import InvalidArgument

from genhub_ddpm.schedule import alphas_cumprod, make_betas, make_process

import diffusers  # a test dependency (genhub[test]); never skipped

DIFFUSERS_NAME = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("num_timesteps", [1000, 50])
def test_alphas_cumprod_match_diffusers(schedule: str, num_timesteps: int) -> None:
    ref = diffusers.DDPMScheduler(num_train_timesteps=num_timesteps, beta_schedule=DIFFUSERS_NAME[schedule])
    betas = make_betas(schedule, num_timesteps)
    ours = alphas_cumprod(betas)
    assert ours.dtype == torch.float64 and ours.shape == (num_timesteps,)
    torch.testing.assert_close(betas.float(), ref.betas, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ours.float(), ref.alphas_cumprod, atol=1e-6, rtol=1e-5)
    assert bool((ours[1:] < ours[:-1]).all()), "alpha-bar must decrease"


def test_process_carries_schedule_and_prediction_type() -> None:
    process = make_process("cosine", 100, prediction_type="v_prediction", clip_sample=None)
    assert process.num_timesteps == 100
    assert process.prediction_type == "v_prediction"
    assert process.clip_sample is None


def test_unknown_schedule_names_the_choices() -> None:
    with pytest.raises(InvalidArgument, match="beta_schedule.*'linear', 'cosine'"):
        make_betas("quadratic", 10)
