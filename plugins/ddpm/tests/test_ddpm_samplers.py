"""One DDPM / DDIM step against diffusers, strided timesteps, and the sampling loop."""

from __future__ import annotations

import pytest
import torch

from hub.errors import Cancelled, InvalidArgument
from hub.model import NoiseSource, StepEvent
from hub.sampling import DiffusionProcess

from genhub_ddpm.samplers import (
    DDIMSampler, DDPMSampler, DPMSolverSampler, ddim_step, ddpm_step, dpm_solver_step, leading_timesteps, sampling_timesteps,
)
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


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("steps", [1, 3, 7, 50, 999])
def test_sampling_timesteps_follow_the_scheduler_config(spacing: str, offset: int, steps: int) -> None:
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=offset)
    ref.set_timesteps(steps)
    process = DiffusionProcess(make_process("linear", T).alphas_cumprod, timestep_spacing=spacing, steps_offset=offset)
    assert sampling_timesteps(process, steps) == ref.timesteps.tolist()


def test_sampling_timesteps_past_the_end_are_refused() -> None:
    process = DiffusionProcess(make_process("linear", 10).alphas_cumprod, steps_offset=1)
    with pytest.raises(InvalidArgument, match=r"steps: 10 steps with steps_offset=1 start at t=10"):
        sampling_timesteps(process, 10)


@pytest.mark.parametrize("spacing", ["trailing", "linspace"])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("use_clipped", [True, False])
def test_ddim_loop_follows_diffusers_spacing_final_alpha_and_clipped_output(
    spacing: str, set_alpha_to_one: bool, use_clipped: bool
) -> None:
    """The whole DDIM loop against DDIMScheduler for the config keys an imported pipeline may set."""
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=100, timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one, prediction_type="v_prediction"
    )
    ref.set_timesteps(7)
    base = make_process("linear", 100, "v_prediction")
    process = DiffusionProcess(
        base.alphas_cumprod, "v_prediction", timestep_spacing=spacing, use_clipped_model_output=use_clipped,
        final_alpha_cumprod=1.0 if set_alpha_to_one else float(base.alphas_cumprod[0]),
    )
    noise = NoiseSource([3, 4])
    x_T = noise.randn(3, 4, 4) * 2  # large enough that the x0 estimates get clipped
    ours = DDIMSampler().sample(_toy_model_fn, process, x_T, steps=7, noise=noise)
    x = x_T
    for t in ref.timesteps:
        x = ref.step(_toy_model_fn(x, t.repeat(2)), int(t), x, use_clipped_model_output=use_clipped).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)  # diffusers' schedule is float32, ours float64


def test_ddpm_loop_follows_diffusers_trailing_spacing() -> None:
    ref = diffusers.DDPMScheduler(num_train_timesteps=100, timestep_spacing="trailing")
    ref.set_timesteps(6)
    process = DiffusionProcess(make_process("linear", 100).alphas_cumprod, timestep_spacing="trailing")
    noise = NoiseSource([5, 6])
    ours = DDPMSampler().sample(_toy_model_fn, process, noise.randn(3, 4, 4), steps=6, noise=noise)
    generators = [torch.Generator().manual_seed(s) for s in (5, 6)]  # what NoiseSource([5, 6]) draws from
    x = torch.stack([torch.randn((3, 4, 4), generator=g) for g in generators])
    for t in ref.timesteps:
        x = ref.step(_toy_model_fn(x, t.repeat(2)), int(t), x, generator=generators).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)


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


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [1, 2, 4, 7])
def test_dpm_solver_loop_matches_diffusers_dpmpp_2m(prediction_type: str, steps: int) -> None:
    """The whole DPM-Solver++ (2M) loop against diffusers' multistep scheduler, final step to clean data."""
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=100, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing",
        prediction_type=prediction_type, final_sigmas_type="zero",
    )
    ref.set_timesteps(steps)
    process = DiffusionProcess(make_process("linear", 100).alphas_cumprod, prediction_type, clip_sample=None,
                               timestep_spacing="trailing")
    noise = NoiseSource([7, 8])
    x_T = noise.randn(3, 4, 4)
    events: list[StepEvent] = []
    ours = DPMSolverSampler().sample(_toy_model_fn, process, x_T, steps=steps, noise=noise, callback=events.append)
    x = x_T
    for t in ref.timesteps:
        x = ref.step(_toy_model_fn(x, t.repeat(2)), int(t), x).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)  # diffusers' sigmas are float32, ours float64
    assert [e.step for e in events] == list(range(1, steps + 1))


def test_dpm_solver_is_ddim_for_one_step_and_second_order_after() -> None:
    process = make_process("linear", T, clip_sample=None)  # unclipped x0: DDIM's step then is the same ODE step
    model_output, x_t, _ = _inputs(seed=3)
    first = dpm_solver_step(process, model_output, 749, 499, x_t)
    torch.testing.assert_close(first.prev_sample, ddim_step(process, model_output, 749, 499, x_t).prev_sample)
    second = dpm_solver_step(process, model_output, 749, 499, x_t, previous=(torch.zeros_like(x_t), 999))
    assert not torch.allclose(second.prev_sample, first.prev_sample)  # the previous x0 estimate enters the step
    with pytest.raises(InvalidArgument, match="eta"):
        DPMSolverSampler().start(process, x_t, steps=4, noise=NoiseSource([0, 1]), eta=0.5)
