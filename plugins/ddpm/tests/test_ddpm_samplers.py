"""One DDPM / DDIM step against diffusers, strided timesteps, and the sampling loop."""

from __future__ import annotations

import pytest
import torch

from hub.errors import Cancelled, InvalidArgument
from hub.model import NoiseSource, StepEvent
from hub.sampling import DiffusionProcess

from genhub_ddpm.samplers import DDIMSampler, DDPMSampler, ddim_step, ddpm_step, leading_timesteps
from genhub_ddpm.schedule import make_process

import diffusers  # a test dependency (genhub[test]); never skipped

T = 1000
SHAPE = (2, 3, 4, 4)
DIFFUSERS_NAME = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


@pytest.mark.parametrize("steps", [1, 3, 7, 10, 50, 333, 1000])
def test_leading_timesteps_match_diffusers(steps: int) -> None:
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=T)
    ddim = diffusers.DDIMScheduler(num_train_timesteps=T)
    ddpm.set_timesteps(steps)
    ddim.set_timesteps(steps)
    ours = leading_timesteps(T, steps)
    assert ours == ddpm.timesteps.tolist() == ddim.timesteps.tolist()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("steps", [1000, 20])
def test_ddpm_step_matches_diffusers(schedule: str, prediction_type: str, clip: bool, steps: int) -> None:
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=DIFFUSERS_NAME[schedule],
        prediction_type=prediction_type,
        clip_sample=clip,
        variance_type="fixed_small",
    )
    ref.set_timesteps(steps)
    process = make_process(schedule, T, prediction_type, 1.0 if clip else None)
    timesteps = leading_timesteps(T, steps)
    for i in (0, len(timesteps) // 2, len(timesteps) - 1):  # first, middle and the last (no noise) step
        t = timesteps[i]
        prev_t = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        model_output, x_t, _ = _inputs(seed=t)
        expected = ref.step(model_output, t, x_t, generator=torch.Generator().manual_seed(t))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t))  # what diffusers drew
        ours = ddpm_step(process, model_output, t, prev_t, x_t, noise)
        torch.testing.assert_close(ours.prev_sample, expected.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.pred_x0, expected.pred_original_sample, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(schedule: str, prediction_type: str, clip: bool, eta: float) -> None:
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule=DIFFUSERS_NAME[schedule], prediction_type=prediction_type, clip_sample=clip
    )
    steps = 25
    ref.set_timesteps(steps)
    process = make_process(schedule, T, prediction_type, 1.0 if clip else None)
    # hub's DiffusionProcess re-derives epsilon from the clipped x0 for non-epsilon predictions,
    # which is diffusers' use_clipped_model_output=True.
    clipped_eps = clip and prediction_type != "epsilon"
    timesteps = leading_timesteps(T, steps)
    for t in (timesteps[0], timesteps[steps // 2], timesteps[-1]):
        model_output, x_t, noise = _inputs(seed=t)
        expected = ref.step(model_output, t, x_t, eta=eta, variance_noise=noise, use_clipped_model_output=clipped_eps)
        ours = ddim_step(process, model_output, t, t - T // steps, x_t, eta, noise)
        torch.testing.assert_close(ours.prev_sample, expected.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.pred_x0, expected.pred_original_sample, atol=1e-5, rtol=1e-5)


def _toy_model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed 'network': deterministic, per-row, depends on t."""
    return 0.5 * x * torch.cos(t.float() / 100).reshape(-1, *([1] * (x.dim() - 1)))


def _small_process() -> DiffusionProcess:
    return make_process("linear", 100)


@pytest.mark.parametrize("sampler,eta", [(DDPMSampler(), 0.0), (DDIMSampler(), 0.0), (DDIMSampler(), 1.0)])
def test_sampler_rows_depend_only_on_their_seed(sampler: DDPMSampler | DDIMSampler, eta: float) -> None:
    def run(seeds: list[int]) -> torch.Tensor:
        noise = NoiseSource(seeds)
        return sampler.sample(_toy_model_fn, _small_process(), noise.randn(3, 4, 4), steps=10, noise=noise, eta=eta)

    together = run([11, 22])
    torch.testing.assert_close(together[0:1], run([11]), atol=1e-6, rtol=0)
    torch.testing.assert_close(together[1:2], run([22]), atol=1e-6, rtol=0)
    torch.testing.assert_close(together, run([11, 22]), atol=0, rtol=0)


def test_ddpm_loop_equals_composed_steps() -> None:
    """The sampler is exactly ddpm_step over the strided schedule with noise from the NoiseSource."""
    process, seeds, steps = _small_process(), [5, 6], 4
    noise = NoiseSource(seeds)
    out = DDPMSampler().sample(_toy_model_fn, process, noise.randn(2), steps=steps, noise=noise)
    noise = NoiseSource(seeds)
    x = noise.randn(2)
    ts = leading_timesteps(100, steps)
    for i, t in enumerate(ts):
        prev_t = t - 100 // steps
        z = noise.randn_like(x) if prev_t >= 0 else None
        x = ddpm_step(process, _toy_model_fn(x, torch.full((2,), t)), t, prev_t, x, z).prev_sample
    torch.testing.assert_close(out, x, atol=0, rtol=0)


def test_callback_sees_every_step_and_previews() -> None:
    events: list[StepEvent] = []
    noise = NoiseSource([1, 2])
    DDIMSampler().sample(
        _toy_model_fn, _small_process(), noise.randn(1, 4, 4), steps=6, noise=noise, callback=events.append, preview_every=2
    )
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6]
    assert {e.total for e in events} == {6}
    assert [e.preview is not None for e in events] == [False, True, False, True, False, True]
    assert events[1].preview is not None and events[1].preview.shape == (2, 1, 4, 4)


def test_callback_returning_false_cancels() -> None:
    seen: list[int] = []

    def stop_at_3(event: StepEvent) -> bool:
        seen.append(event.step)
        return event.step < 3

    noise = NoiseSource([1])
    with pytest.raises(Cancelled, match="step 3 of 10"):
        DDPMSampler().sample(_toy_model_fn, _small_process(), noise.randn(2), steps=10, noise=noise, callback=stop_at_3)
    assert seen == [1, 2, 3]


def test_sampler_argument_errors_name_the_field() -> None:
    noise = NoiseSource([1])
    x = noise.randn(2)
    with pytest.raises(InvalidArgument, match=r"steps: must be between 1 and 100"):
        DDIMSampler().sample(_toy_model_fn, _small_process(), x, steps=101, noise=noise)
    with pytest.raises(InvalidArgument, match=r"eta: must be between 0 and 1"):
        DDIMSampler().sample(_toy_model_fn, _small_process(), x, steps=5, noise=noise, eta=1.5)
    with pytest.raises(InvalidArgument, match=r"eta: .*use sampler 'ddim'"):
        DDPMSampler().sample(_toy_model_fn, _small_process(), x, steps=5, noise=noise, eta=0.3)
