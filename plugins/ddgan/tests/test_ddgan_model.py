"""The "ddgan" family through the model interface: train, sample per seed, step events, weights, the hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from safetensors.torch import load_file, save_file

from genhub_ddgan import DDGANConfig, DDGANFamily
from hub.builtin.datasets import load_digits, load_grid25
from hub.errors import Cancelled, InvalidArgument
from hub.model import BuildContext, GenerativeModel, SampleRequest, StepEvent, TrainOptions, per_sample_seeds
from hub.sampling import SamplerRegistry

if TYPE_CHECKING:
    from hub.core import Hub

TINY_IMAGES = dict(sample_shape=(1, 8, 8), z_dim=4, emb_dim=16, base_channels=8, channel_mults=(1, 2), r1_interval=2)
TINY_POINTS = dict(sample_shape=(2,), z_dim=2, emb_dim=16, width=16, num_layers=2, data_scale=4.0, r1_interval=2)
SEEDS = per_sample_seeds(11, 3)


def build(**overrides: object) -> GenerativeModel:
    return DDGANFamily().build(DDGANConfig(**overrides), BuildContext(samplers=SamplerRegistry()))


def train(model: GenerativeModel, steps: int = 3) -> GenerativeModel:
    dataset = load_grid25("train") if model.output_kind == "points" else load_digits("train", 8)
    model.train(dataset, TrainOptions(steps=steps, batch_size=8, learning_rate=1e-3, seed=0))
    return model


@pytest.mark.parametrize("overrides", [TINY_IMAGES, TINY_POINTS], ids=["images", "points"])
def test_a_few_training_steps_give_finite_losses_and_move_the_weights(overrides: dict) -> None:
    model = build(**overrides)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dataset = load_grid25("train") if model.output_kind == "points" else load_digits("train", 8)
    result = model.train(dataset, TrainOptions(steps=4, batch_size=8, learning_rate=1e-3, seed=0))
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    assert len(result.extra["d_losses"]) == len(result.extra["g_losses"]) == len(result.losses)
    after = model.state_dict()
    for group in ("G.", "D.", "G_ema."):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(group)), f"no {group}* weight moved"
    assert int(after["train_steps"][0]) == 4


@pytest.mark.parametrize("overrides", [TINY_IMAGES, TINY_POINTS], ids=["images", "points"])
def test_samples_are_reproducible_and_depend_only_on_their_own_seed(overrides: dict) -> None:
    model = train(build(**overrides))
    together = model.sample(SampleRequest(seeds=SEEDS))
    assert together.shape == (3, *overrides["sample_shape"])
    assert torch.equal(model.sample(SampleRequest(seeds=SEEDS)), together)
    alone = model.sample(SampleRequest(seeds=[SEEDS[2]]))
    torch.testing.assert_close(alone[0], together[2], rtol=0, atol=1e-6)
    assert not torch.allclose(together[0], together[1])
    if model.output_kind == "image":
        assert float(together.abs().max()) <= 1.0


@pytest.mark.parametrize("num_steps", [4, 2])
def test_one_step_event_per_denoising_step_with_previews(num_steps: int) -> None:
    model = build(**TINY_POINTS, num_steps=num_steps)
    events: list[StepEvent] = []
    model.sample(SampleRequest(seeds=SEEDS, preview_every=2), events.append)
    assert [(e.step, e.total) for e in events] == [(i, num_steps) for i in range(1, num_steps + 1)]
    assert [e.preview is not None for e in events] == [i % 2 == 0 for i in range(1, num_steps + 1)]
    assert model.capabilities.default_steps == model.capabilities.max_steps == num_steps


def test_a_callback_returning_false_cancels_between_steps() -> None:
    model = build(**TINY_POINTS)
    seen: list[int] = []

    def stop_after_two(event: StepEvent) -> bool:
        seen.append(event.step)
        return event.step < 2

    with pytest.raises(Cancelled, match="step 2 of 4"):
        model.sample(SampleRequest(seeds=SEEDS), stop_after_two)
    assert seen == [1, 2]


def test_requests_for_other_step_counts_or_samplers_are_rejected() -> None:
    model = build(**TINY_POINTS)
    with pytest.raises(InvalidArgument, match="exactly 4 steps"):
        model.sample(SampleRequest(seeds=SEEDS, steps=50))
    with pytest.raises(InvalidArgument, match="leave sampler unset"):
        model.sample(SampleRequest(seeds=SEEDS, sampler="ddim"))
    assert model.sample(SampleRequest(seeds=SEEDS, steps=4, sampler="ddgan")).shape == (3, 2)


@pytest.mark.parametrize("overrides", [TINY_IMAGES, TINY_POINTS], ids=["images", "points"])
def test_weights_round_trip_through_safetensors(tmp_path: Path, overrides: dict) -> None:
    model = train(build(**overrides), steps=2)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    fresh = DDGANFamily().build(DDGANConfig.from_json(model.config.to_json()), BuildContext(samplers=SamplerRegistry()))
    fresh.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    assert torch.equal(fresh.sample(SampleRequest(seeds=SEEDS)), model.sample(SampleRequest(seeds=SEEDS)))
    with pytest.raises(InvalidArgument, match="do not fit this config"):
        build(**{**overrides, "emb_dim": 8}).load_state_dict(model.state_dict())


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(InvalidArgument, match="fewer levels"):
        DDGANConfig(sample_shape=(1, 8, 8), channel_mults=(1, 2, 2, 2))
    with pytest.raises(InvalidArgument, match="num_steps"):
        DDGANConfig(num_steps=0)
    points = DDGANFamily().default_config(load_grid25("train"))
    assert points.sample_shape == (2,) and points.num_steps == 4


def test_ddgan_trains_registers_and_generates_through_the_hub(hub: Hub) -> None:
    assert {"ddgan", "distill"} <= set(hub.parts.families)
    small = {k: v for k, v in TINY_POINTS.items() if k != "sample_shape"}
    hub.train("ddgan", "gmm-grid25", model_name="dd", options=TrainOptions(steps=2, batch_size=8, seed=0),
              config_overrides=small)
    events: list[StepEvent] = []
    generation = hub.generate("dd:1", SampleRequest.from_seed(0, 5), events.append)
    assert generation.samples.shape == (5, 2) and len(events) == 4


def test_fourier_features_can_be_kept_out_of_the_discriminator() -> None:
    both = build(**TINY_POINTS, fourier_octaves=3)
    g_only = build(**TINY_POINTS, fourier_octaves=3, fourier_in_d=False)
    assert both.G.fc_in.in_features == g_only.G.fc_in.in_features == 2 * 7 + 2  # x, 3 sin and 3 cos each; z
    assert (both.D.fc_in.in_features, g_only.D.fc_in.in_features) == (4 * 7, 4)  # (x_{t-1}, x_t) encoded, or raw
