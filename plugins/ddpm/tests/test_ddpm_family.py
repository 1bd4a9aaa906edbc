"""DDPMModel: train, sample, determinism, batch independence, cancellation, weights, validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from hub.datasets import Dataset
from hub.errors import Cancelled, InvalidArgument, NotFound
from hub.model import BuildContext, SampleRequest, StepEvent, TrainOptions, TrainProgress
from hub.sampling import SamplerRegistry

from genhub_ddpm.family import DDPMConfig, DDPMFamily, DDPMModel
from genhub_ddpm.samplers import DDIMSampler, DDPMSampler


def tiny_unet_config(**overrides: object) -> DDPMConfig:
    base = dict(
        sample_shape=(1, 8, 8), base_channels=8, channel_mults=(1, 2), num_timesteps=100, default_steps=8
    )
    return DDPMConfig(**{**base, **overrides})  # type: ignore[arg-type]


def build(config: DDPMConfig, context: BuildContext) -> DDPMModel:
    return DDPMFamily().build(config, context)


@pytest.fixture
def trained_unet(context: BuildContext, image_dataset: Dataset) -> DDPMModel:
    model = build(tiny_unet_config(num_classes=3), context)
    model.train(image_dataset, TrainOptions(steps=3, batch_size=8, learning_rate=1e-3, seed=1))
    return model


def _params(model: DDPMModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_unet_trains_loss_finite_weights_change(context: BuildContext, image_dataset: Dataset) -> None:
    model = build(tiny_unet_config(), context)
    before = _params(model)
    events: list[TrainProgress] = []
    result = model.train(image_dataset, TrainOptions(steps=4, batch_size=8, learning_rate=1e-3), progress=events.append)
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    assert [e.step for e in events] == [1, 2, 3, 4] and events[-1].total == 4
    after = model.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert model.describe()["train_steps"] == 4


def test_mlp_trains_and_samples_points(context: BuildContext, point_dataset: Dataset) -> None:
    config = DDPMFamily().default_config(point_dataset).replace(base_channels=16, num_res_blocks=1, num_timesteps=50, default_steps=5)
    model = build(config, context)
    assert model.output_kind == "points" and config.network == "mlp" and config.clip_sample is None
    before = _params(model)
    result = model.train(point_dataset, TrainOptions(steps=5, batch_size=16, learning_rate=1e-3))
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert any(not torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    out = model.sample(SampleRequest.from_seed(0, 3))
    assert out.shape == (3, 2) and torch.isfinite(out).all()


def test_training_is_deterministic_per_seed(context: BuildContext, image_dataset: Dataset) -> None:
    def train(seed: int) -> dict[str, torch.Tensor]:
        model = build(tiny_unet_config(num_classes=3), context)
        model.train(image_dataset, TrainOptions(steps=2, batch_size=8, seed=seed))
        return model.state_dict()

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_sampling_is_deterministic_per_seed(trained_unet: DDPMModel, sampler: str, eta: float) -> None:
    request = SampleRequest.from_seed(7, 2, sampler=sampler, steps=5, eta=eta)
    first, second = trained_unet.sample(request), trained_unet.sample(request)
    assert first.shape == (2, 1, 8, 8)
    assert torch.equal(first, second)
    assert first.min() >= -1 and first.max() <= 1
    other = trained_unet.sample(dataclasses.replace(request, seeds=[s + 1 for s in request.seeds]))
    assert not torch.equal(first, other)


@pytest.mark.parametrize(
    "extra",
    [dict(sampler="ddim", eta=1.0), dict(sampler="ddpm"), dict(class_labels=[0, 2], guidance_scale=3.0)],
    ids=["ddim-eta1", "ddpm", "guided"],
)
def test_batch_independence(trained_unet: DDPMModel, extra: dict) -> None:
    a, b = 123, 456
    labels = extra.pop("class_labels", None)
    both = trained_unet.sample(SampleRequest(seeds=[a, b], steps=6, class_labels=labels, **extra))
    alone_a = trained_unet.sample(SampleRequest(seeds=[a], steps=6, class_labels=labels and labels[:1], **extra))
    alone_b = trained_unet.sample(SampleRequest(seeds=[b], steps=6, class_labels=labels and labels[1:], **extra))
    torch.testing.assert_close(both, torch.cat([alone_a, alone_b]), atol=1e-5, rtol=0)


def test_class_labels_change_the_sample(trained_unet: DDPMModel) -> None:
    x0 = trained_unet.sample(SampleRequest(seeds=[1], steps=4, class_labels=[0]))
    x2 = trained_unet.sample(SampleRequest(seeds=[1], steps=4, class_labels=[2]))
    assert not torch.equal(x0, x2)


def test_callback_sees_steps_and_can_cancel(trained_unet: DDPMModel) -> None:
    events: list[StepEvent] = []
    trained_unet.sample(SampleRequest(seeds=[1, 2], steps=5, preview_every=5), callback=events.append)
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].preview is not None and events[-1].preview.shape == (2, 1, 8, 8)
    assert all(e.preview is None for e in events[:-1])

    seen: list[int] = []

    def stop_after_two(event: StepEvent) -> bool:
        seen.append(event.step)
        return event.step < 2

    with pytest.raises(Cancelled):
        trained_unet.sample(SampleRequest(seeds=[1], steps=5), callback=stop_after_two)
    assert seen == [1, 2]


def test_state_dict_round_trips_through_safetensors(trained_unet: DDPMModel, context: BuildContext, tmp_path) -> None:
    tensors = trained_unet.state_dict()
    assert all(t.is_contiguous() for t in tensors.values())
    assert any(k.startswith("ema.") for k in tensors) and any(k.startswith("net.") for k in tensors)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))  # refuses shared or non-contiguous tensors

    fresh = build(trained_unet.config, context)
    request = SampleRequest.from_seed(3, 2, steps=4, class_labels=[1, 2])
    assert not torch.equal(fresh.sample(request), trained_unet.sample(request))
    fresh.load_state_dict(load_file(str(path)))
    assert torch.equal(fresh.sample(request), trained_unet.sample(request))
    assert fresh.train_steps == trained_unet.train_steps

    # A config round-trips through JSON, as the registry stores it.
    assert DDPMConfig.from_json(trained_unet.config.to_json()) == trained_unet.config


def test_slim_checkpoint_of_ema_weights_loads(trained_unet: DDPMModel, context: BuildContext) -> None:
    slim = {k: v for k, v in trained_unet.state_dict().items() if k.startswith("ema.")}
    fresh = build(trained_unet.config, context)
    fresh.load_state_dict(slim)
    request = SampleRequest(seeds=[4], steps=3, class_labels=[0])
    assert torch.equal(fresh.sample(request), trained_unet.sample(request))


def test_weights_from_another_config_are_refused(trained_unet: DDPMModel, context: BuildContext) -> None:
    other = build(tiny_unet_config(base_channels=16), context)
    with pytest.raises(InvalidArgument, match="weights"):
        other.load_state_dict(trained_unet.state_dict())


def test_samplers_come_from_the_build_context(context: BuildContext, image_dataset: Dataset) -> None:
    class Zero(DDIMSampler):
        name = "zero"

        def sample(self, model_fn, process, x_T, **kwargs):  # type: ignore[override]
            return torch.zeros_like(x_T)

    registry = SamplerRegistry({"ddim": DDIMSampler(), "zero": Zero()})
    model = DDPMFamily().build(tiny_unet_config(), BuildContext(samplers=registry))
    assert torch.equal(model.sample(SampleRequest(seeds=[1], sampler="zero")), torch.zeros(1, 1, 8, 8))
    with pytest.raises(NotFound, match="'ddpm'.*available"):
        model.sample(SampleRequest(seeds=[1], sampler="ddpm"))


@pytest.mark.parametrize(
    "request_kwargs,field,text",
    [
        (dict(steps=0), "steps", "between 1 and 100"),
        (dict(steps=101), "steps", "between 1 and 100"),
        (dict(class_labels=[3]), "class_labels", r"\[0, 2\]"),
        (dict(class_labels=[-1]), "class_labels", r"\[0, 2\]"),
        (dict(class_labels=[0, 1]), "class_labels", "one label per seed"),
        (dict(guidance_scale=2.0), "guidance_scale", "class_labels"),
        (dict(eta=2.0), "eta", "between 0 and 1"),
        (dict(truncation=0.7), "truncation", "GAN"),
        (dict(params={"foo": 1}), "params", "foo"),
        (dict(seeds=[]), "seeds", "at least one"),
    ],
)
def test_bad_requests_name_the_field(trained_unet: DDPMModel, request_kwargs: dict, field: str, text: str) -> None:
    request = SampleRequest(**{"seeds": [1], **request_kwargs})
    with pytest.raises(InvalidArgument, match=text) as info:
        trained_unet.sample(request)
    assert info.value.field == field


def test_unknown_sampler_is_not_found(trained_unet: DDPMModel) -> None:
    with pytest.raises(NotFound, match="'nope'"):
        trained_unet.sample(SampleRequest(seeds=[1], sampler="nope"))


def test_unconditional_model_refuses_labels(context: BuildContext) -> None:
    model = build(tiny_unet_config(), context)
    with pytest.raises(InvalidArgument, match="not class-conditional") as info:
        model.sample(SampleRequest(seeds=[1], class_labels=[0]))
    assert info.value.field == "class_labels"


def test_default_config_fits_the_dataset(image_dataset: Dataset, point_dataset: Dataset) -> None:
    family = DDPMFamily()
    image = family.default_config(image_dataset)
    assert image.network == "unet" and image.sample_shape == (1, 8, 8) and image.num_classes == 3
    points = family.default_config(point_dataset)
    assert points.network == "mlp" and points.sample_shape == (2,) and points.num_classes == 0
    rgb = family.default_config(Dataset("rgb", "train", torch.zeros(2, 3, 32, 32)))
    assert rgb.sample_shape == (3, 32, 32) and len(rgb.channel_mults) == 4


@pytest.mark.parametrize(
    "overrides,field",
    [
        (dict(network="transformer"), "network"),
        (dict(sample_shape=(1, 6, 6), channel_mults=(1, 2, 2)), "channel_mults"),
        (dict(beta_schedule="quadratic"), "beta_schedule"),
        (dict(prediction_type="x"), "prediction_type"),
        (dict(timestep_spacing="uniform"), "timestep_spacing"),
        (dict(default_steps=500), "default_steps"),
        (dict(sample_shape=(2,)), "sample_shape"),
    ],
)
def test_bad_configs_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        tiny_unet_config(**overrides)
    assert info.value.field == field


def test_timestep_spacing_reaches_the_samplers(context: BuildContext) -> None:
    leading = build(tiny_unet_config(), context)  # configs saved before the option keep diffusers' DDIM default
    trailing = build(tiny_unet_config(timestep_spacing="trailing"), context)
    assert (leading.process.timestep_spacing, trailing.process.timestep_spacing) == ("leading", "trailing")
    passes: dict[str, list[int]] = {}
    for name, model in (("leading", leading), ("trailing", trailing)):
        seen = passes.setdefault(name, [])
        net = model.ema.forward
        model.ema.forward = lambda x, t, *rest, net=net, seen=seen: seen.append(int(t[0])) or net(x, t, *rest)
        model.sample(SampleRequest.from_seed(0, 1, sampler="ddim", steps=4))
    assert passes == {"leading": [75, 50, 25, 0], "trailing": [99, 74, 49, 24]}


def test_training_rejects_a_dataset_of_another_shape(context: BuildContext, point_dataset: Dataset) -> None:
    model = build(tiny_unet_config(), context)
    with pytest.raises(InvalidArgument, match=r"shape \[2\].*default_config"):
        model.train(point_dataset, TrainOptions(steps=1))


def test_v_prediction_and_cosine_train_and_sample(context: BuildContext, image_dataset: Dataset) -> None:
    model = build(tiny_unet_config(prediction_type="v_prediction", beta_schedule="cosine"), context)
    result = model.train(image_dataset, TrainOptions(steps=2, batch_size=8))
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert torch.isfinite(model.sample(SampleRequest(seeds=[0], steps=3))).all()
