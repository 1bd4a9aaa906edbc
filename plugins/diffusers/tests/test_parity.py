"""Parity: an imported pipeline samples, through genhub's own samplers, what the diffusers pipeline returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hub.model import SampleRequest

from genhub_ddpm.samplers import ddpm_step, sampling_timesteps
from genhub_diffusers import import_pipeline
from genhub_diffusers.pipeline import make_process

import diffusers

SEEDS = [7, 8]


def pipeline_images(pipe: Any, steps: int, **kwargs: Any) -> torch.Tensor:
    """The pipeline's output for SEEDS, one generator per row (what genhub's NoiseSource draws), in [-1, 1] NCHW."""
    generators = [torch.Generator().manual_seed(s) for s in SEEDS]
    images = pipe(batch_size=len(SEEDS), generator=generators, num_inference_steps=steps, output_type="np", **kwargs).images
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2) * 2 - 1


def genhub_images(hub: Any, folder: Path, steps: int, sampler: str | None = None) -> torch.Tensor:
    version = import_pipeline(hub, folder, "imported")
    request = SampleRequest(seeds=SEEDS, steps=steps, sampler=sampler)
    return hub.generate(version.ref, request, log=False).samples


@pytest.mark.parametrize(
    "scheduler",
    [
        {},  # DDIMPipeline's defaults: linear betas, epsilon, clip, leading, set_alpha_to_one
        {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"},  # clipped: eps stays unclipped
        {"prediction_type": "sample", "clip_sample": False, "timestep_spacing": "trailing"},
        {"beta_schedule": "scaled_linear", "set_alpha_to_one": False, "steps_offset": 1, "clip_sample_range": 0.5},
        {"timestep_spacing": "linspace", "num_train_timesteps": 200},
    ],
)
def test_ddim_samples_equal_the_diffusers_pipeline(hub: Any, save_pipeline: Any, scheduler: dict[str, Any]) -> None:
    folder = save_pipeline("ddim", **scheduler)
    expected = pipeline_images(diffusers.DDIMPipeline.from_pretrained(folder), steps=10)  # eta 0
    ours = genhub_images(hub, folder, steps=10)
    assert expected.std() > 0.1  # a real picture of random weights, not a constant
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_v_prediction_with_clipping_matches_the_pipeline_default_not_clipped_model_output(hub: Any, save_pipeline: Any) -> None:
    """DDIMPipeline passes use_clipped_model_output=False; genhub's own families re-derive epsilon (True).

    Imported pipelines follow the pipeline; this checks the choice is visible, so the test above can fail.
    """
    folder = save_pipeline("ddim", prediction_type="v_prediction", clip_sample_range=0.5)
    pipe = diffusers.DDIMPipeline.from_pretrained(folder)
    default, clipped = pipeline_images(pipe, steps=10), pipeline_images(pipe, steps=10, use_clipped_model_output=True)
    ours = genhub_images(hub, folder, steps=10)
    torch.testing.assert_close(ours, default, atol=1e-4, rtol=0)
    assert (ours - clipped).abs().max() > 1e-2


def test_ddpm_pipeline_ancestral_samples_equal_diffusers(hub: Any, save_pipeline: Any) -> None:
    """The whole DDPMPipeline loop, step noise included (one generator per row, as genhub draws it)."""
    folder = save_pipeline("ddpm", num_train_timesteps=50)
    expected = pipeline_images(diffusers.DDPMPipeline.from_pretrained(folder), steps=50)
    ours = genhub_images(hub, folder, steps=50)  # the DDPMPipeline's default sampler: "ddpm"
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheduler", [{}, {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}])
def test_ancestral_single_steps_match_ddpm_scheduler_step(save_pipeline: Any, scheduler: dict[str, Any]) -> None:
    folder = save_pipeline("ddpm", **scheduler)
    ref = diffusers.DDPMScheduler.from_pretrained(folder / "scheduler")
    ref.set_timesteps(20)
    process = make_process(diffusers.DDPMScheduler.load_config(folder / "scheduler"))
    timesteps = sampling_timesteps(process, 20)
    assert timesteps == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    for i in (0, 9, 19):
        t, prev_t = timesteps[i], timesteps[i + 1] if i + 1 < 20 else -1
        model_output, x_t = torch.randn(2, 3, 8, 8, generator=g) * 2, torch.randn(2, 3, 8, 8, generator=g) * 2
        expected = ref.step(model_output, t, x_t, generator=torch.Generator().manual_seed(t))
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(t))  # what diffusers drew
        ours = ddpm_step(process, model_output, t, prev_t, x_t, noise if prev_t >= 0 else None)
        torch.testing.assert_close(ours.prev_sample, expected.prev_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.pred_x0, expected.pred_original_sample, atol=1e-5, rtol=1e-5)


def test_class_conditional_unet_takes_labels(hub: Any, save_pipeline: Any) -> None:
    """A UNet2DModel with num_class_embeds: labels go to the network, as UNet2DModel(x, t, class_labels) takes them."""
    folder = save_pipeline("ddim", unet={"num_class_embeds": 3})
    version = import_pipeline(hub, folder, "conditional")
    a = hub.generate(version.ref, SampleRequest(seeds=[1, 1], steps=4, class_labels=[0, 2]), log=False).samples
    b = hub.generate(version.ref, SampleRequest(seeds=[1], steps=4, class_labels=[2]), log=False).samples
    torch.testing.assert_close(a[1:], b, atol=1e-4, rtol=0)  # the label decides (the UNet rounds per batch size)
    assert (a[0] - a[1]).abs().max() > 1e-3


def test_requests_batched_pass_by_pass_sample_what_they_do_alone(hub: Any, save_pipeline: Any) -> None:
    """The engine's step-level batching: different samplers, steps and positions share each network pass."""
    from hub.stepping import run_pass

    version = import_pipeline(hub, save_pipeline("ddim", num_train_timesteps=100), "stepped")
    model = hub.load(version.ref).model
    requests = [SampleRequest(seeds=[1], steps=4), SampleRequest(seeds=[2, 3], steps=6, sampler="ddpm"),
                SampleRequest(seeds=[4], steps=5, eta=0.5)]
    alone = [model.sample(r) for r in requests]
    trajectories = [model.begin(r) for r in requests]
    while active := [tr for tr in trajectories if not tr.finished]:
        assert not any(isinstance(e, Exception) for e in run_pass(model, active))
    for trajectory, expected in zip(trajectories, alone):
        torch.testing.assert_close(trajectory.result(), expected, atol=1e-4, rtol=0)  # the UNet rounds per batch size
    assert model.sample_cost(requests[1]).total == 6 * 2 * 3 * 8 * 8


def test_class_conditional_samples_equal_the_ddim_loop_with_class_labels(hub: Any, save_pipeline: Any) -> None:
    """diffusers has no pipeline for a class-conditional UNet2DModel: the reference is DDIMPipeline's loop written out,
    with ``class_labels`` passed to the UNet, from the same per-row noise."""
    folder = save_pipeline("ddim", unet={"num_class_embeds": 3})
    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet")
    scheduler = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler")
    scheduler.set_timesteps(8)
    labels = torch.tensor([2, 0])
    x = torch.stack([torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(s)) for s in SEEDS])
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    version = import_pipeline(hub, folder, "labelled")
    ours = hub.generate(version.ref, SampleRequest(seeds=SEEDS, steps=8, class_labels=[2, 0]), log=False).samples
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=1e-4, rtol=0)
