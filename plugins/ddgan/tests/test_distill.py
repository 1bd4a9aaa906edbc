"""The "distill" family: teacher pairs, regression + adversarial training, student sampling, the hub path."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from genhub_ddgan import DistillConfig, DistillFamily
from hub.builtin.datasets import load_grid25
from hub.errors import Cancelled, InvalidArgument
from hub.model import (
    BuildContext,
    Capabilities,
    GenerativeModel,
    InferenceModel,
    ModelConfig,
    NoiseSource,
    SampleRequest,
    StepEvent,
    TrainOptions,
    per_sample_seeds,
)
from hub.sampling import SamplerRegistry
from hub.stepping import run_pass

if TYPE_CHECKING:
    from hub.core import Hub

TINY = dict(sample_shape=(2,), teacher="stub:1", num_pairs=64, teacher_steps=3, emb_dim=16, width=16, num_layers=2,
            data_scale=4.0, r1_interval=2)
SEEDS = per_sample_seeds(5, 3)


class StubTeacher(InferenceModel):
    """A 'diffusion model' whose sample is a fixed function of x_T, drawn first from each seed as genhub-ddpm does."""

    capabilities = Capabilities(output_kind="points", sample_shape=(2,), samplers=("ddim",), default_sampler="ddim",
                                max_steps=1000, default_steps=25)

    def __init__(self) -> None:
        super().__init__(ModelConfig())
        self.requests: list[SampleRequest] = []

    def sample(self, request: SampleRequest, callback=None) -> torch.Tensor:  # type: ignore[no-untyped-def]
        self.requests.append(request)
        x_T = NoiseSource(request.seeds).randn(2)
        return 2.0 * torch.round(x_T)  # snaps noise to a grid of modes, like a trained teacher would


def context(teacher: StubTeacher, loads: list[str]) -> BuildContext:
    def load_version(ref: str) -> GenerativeModel:
        loads.append(ref)
        return teacher

    return BuildContext(samplers=SamplerRegistry(), load_version=load_version)


def test_teacher_is_loaded_lazily_and_pairs_start_from_the_teachers_noise() -> None:
    teacher, loads = StubTeacher(), []
    model = DistillFamily().build(DistillConfig(**TINY), context(teacher, loads))
    model.sample(SampleRequest(seeds=SEEDS))
    assert loads == []  # sampling a student never needs its teacher
    x_T, targets, states = model.teacher_pairs(teacher)
    assert x_T.shape == targets.shape == (64, 2) and states is None  # no trajectory loss: the samples alone
    torch.testing.assert_close(targets, 2.0 * torch.round(x_T))
    assert {(r.sampler, r.steps) for r in teacher.requests} == {("ddim", 3)}


def test_student_learns_to_regress_the_teacher_and_weights_move() -> None:
    teacher, loads = StubTeacher(), []
    model = DistillFamily().build(DistillConfig(**TINY, adversarial_weight=0.05), context(teacher, loads))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = model.train(load_grid25("train"), TrainOptions(steps=60, batch_size=16, learning_rate=3e-3, seed=0))
    assert loads == ["stub:1"]
    regression = result.extra["regression_losses"]
    assert all(torch.isfinite(torch.tensor(result.losses))) and regression[-1] < regression[0]
    after = model.state_dict()
    for group in ("G.", "D.", "G_ema."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(group)), f"no {group}* weight moved"


@pytest.mark.parametrize("num_steps", [1, 3])
def test_student_sampling_is_per_seed_with_one_event_per_step(num_steps: int) -> None:
    model = DistillFamily().build(DistillConfig(**{**TINY, "num_steps": num_steps}), context(StubTeacher(), []))
    events: list[StepEvent] = []
    together = model.sample(SampleRequest(seeds=SEEDS), events.append)
    assert [(e.step, e.total) for e in events] == [(i, num_steps) for i in range(1, num_steps + 1)]
    torch.testing.assert_close(model.sample(SampleRequest(seeds=SEEDS[1:2]))[0], together[1], rtol=0, atol=1e-6)
    with pytest.raises(Cancelled):
        model.sample(SampleRequest(seeds=SEEDS), lambda e: False)


def test_misconfigured_distillation_says_how_to_fix_it() -> None:
    with pytest.raises(InvalidArgument, match="1 to 4 steps"):
        DistillConfig(num_steps=8)
    model = DistillFamily().build(DistillConfig(**TINY), BuildContext(samplers=SamplerRegistry()))
    with pytest.raises(InvalidArgument, match="train through the hub"):
        model.train(load_grid25("train"), TrainOptions(steps=1, batch_size=4))
    wrong = DistillFamily().build(DistillConfig(**{**TINY, "sample_shape": (3,)}), context(StubTeacher(), []))
    with pytest.raises(InvalidArgument, match="shape"):
        wrong.teacher_pairs(StubTeacher())


def test_distilling_a_registered_ddpm_teacher_through_the_hub(hub: Hub) -> None:
    options = TrainOptions(steps=2, batch_size=8, seed=0)
    teacher = hub.train("ddpm", "gmm-grid25", model_name="teacher", options=options,
                        config_overrides={"base_channels": 16, "num_res_blocks": 1, "num_timesteps": 50})
    small = {k: v for k, v in TINY.items() if k not in ("sample_shape", "teacher")}
    # --parent names the teacher: the hub pins it in the config and records it as lineage
    student = hub.train("distill", "gmm-grid25", model_name="student", options=options, parent="teacher",
                        config_overrides={**small, "teacher_steps": 5, "num_steps": 2})
    assert student.config["teacher"] == "teacher:1"
    assert student.parent == "teacher:1"
    assert [v.ref for v in hub.registry.lineage(student.ref)] == ["student:1", "teacher:1"]
    events: list[StepEvent] = []
    assert hub.generate("student", SampleRequest.from_seed(0, 4), events.append).samples.shape == (4, 2)
    assert len(events) == 2


def test_trajectory_targets_follow_the_teachers_ddim_chain(hub: Hub) -> None:
    options = TrainOptions(steps=2, batch_size=8, seed=0)
    hub.train("ddpm", "gmm-grid25", model_name="teacher", options=options,
              config_overrides={"base_channels": 16, "num_res_blocks": 1, "num_timesteps": 40,
                                                 "default_steps": 8})
    small = {k: v for k, v in TINY.items() if k not in ("sample_shape", "teacher")}
    student = hub.train("distill", "gmm-grid25", model_name="student", options=options, parent="teacher",
                        config_overrides={**small, "num_pairs": 16, "teacher_steps": 8, "num_steps": 2,
                                          "time_power": 3.0, "trajectory_weight": 1.0, "regression_weight": 0.0})
    assert student.config["trajectory_weight"] == 1.0
    model, teacher = hub.load("student").model, hub.load("teacher").model
    assert model.level_times() == [0.0, 0.125, 1.0]  # (k / T)^3: the middle level near the data
    x_T, samples, states = model.teacher_pairs(teacher)
    assert states is not None and states.shape == (16, 3, 2)  # levels 0..T of the teacher's chain
    torch.testing.assert_close(states[:, 2], x_T)  # level T: the noise the teacher starts from
    seeds = per_sample_seeds(model.config.pair_seed, 16)
    torch.testing.assert_close(states[:, 0], teacher.sample(SampleRequest(seeds=seeds, sampler="ddim", steps=8)))
    torch.testing.assert_close(samples, states[:, 0])
    # level 1 (s = 0.125) is the teacher's state after 7 of its 8 steps
    trajectory = teacher.begin(SampleRequest(seeds=seeds, sampler="ddim", steps=8))
    for _ in range(7):
        run_pass(teacher, [trajectory])
    torch.testing.assert_close(states[:, 1], trajectory.state.x)
    # each step's x_0 target is the one whose DDIM step lands on the teacher's next state
    x_t, x0 = model._step_targets(states / model.config.data_scale)
    t = torch.tensor([1, 2]).repeat(16)
    landed = model.process.ddim_step(x0.flatten(0, 1), x_t.flatten(0, 1), t).reshape(16, 2, 2)
    torch.testing.assert_close(landed, states[:, :2] / model.config.data_scale, rtol=1e-4, atol=1e-4)


def test_a_class_conditional_teachers_pairs_ask_for_the_class_each_noise_draws(hub: Hub) -> None:
    # teacher_classes: each x_T gets a class c(x_T), every class equally likely; the teacher is asked for that class
    # (not its null class, which learns from only the class-dropout share of the data) and the student sees c as z
    options = TrainOptions(steps=2, batch_size=8, seed=0)
    hub.train("ddpm", "digits16", model_name="teacher", options=options,
              config_overrides={"base_channels": 8, "channel_mults": [1], "num_timesteps": 20,
                                                          "default_steps": 10})
    student = hub.train("distill", "digits16", model_name="student", options=options, parent="teacher",
                        config_overrides={"num_pairs": 24, "teacher_steps": 3, "base_channels": 8, "channel_mults": [1, 2],
                                          "emb_dim": 16, "teacher_classes": 10})
    model, teacher = hub.load("student").model, hub.load("teacher").model
    assert student.config["teacher_classes"] == 10 and DistillConfig().teacher_classes == 0  # old checkpoints: 0
    counts = torch.bincount(model.noise_classes(torch.randn(5000, 1, 16, 16)), minlength=10)
    assert counts.min() > 400 and counts.max() < 600  # 500 each expected
    x_T, samples, _ = model.teacher_pairs(teacher)
    classes = model.noise_classes(x_T)
    seeds = per_sample_seeds(model.config.pair_seed, 24)
    asked = teacher.sample(SampleRequest(seeds=seeds, sampler="ddim", steps=3, class_labels=classes.tolist()))
    torch.testing.assert_close(samples, asked)
    null = teacher.sample(SampleRequest(seeds=seeds, sampler="ddim", steps=3))
    assert not torch.allclose(samples, null)  # a conditional request, not the null class
    # sampling: the class comes from each seed's own x_T, so a seed alone draws what it draws in a batch
    batch = hub.generate("student", SampleRequest(seeds=SEEDS), log=False).samples
    alone = hub.generate("student", SampleRequest(seeds=SEEDS[2:]), log=False).samples
    torch.testing.assert_close(alone[0], batch[2], rtol=0, atol=1e-5)
    z = model.student_z(x_T)
    assert z is not None and torch.equal(z.argmax(dim=1), classes) and torch.equal(z.sum(dim=1), torch.ones(24))
    with pytest.raises(InvalidArgument, match="teacher_classes"):
        DistillConfig(**{**TINY, "teacher_classes": 3})  # more classes than values in a 2D x_T
