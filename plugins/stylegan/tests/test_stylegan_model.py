"""The "stylegan" and "gan" families through the model interface: train, sample, weights, the hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from safetensors.torch import load_file, save_file

import genhub_stylegan
from genhub_stylegan import GANConfig, GANFamily, StyleGANConfig, StyleGANFamily
from hub.builtin.datasets import load_digits, load_grid25
from hub.errors import Cancelled, InvalidArgument
from hub.model import (BuildContext, GenerativeModel, NoiseSource, SampleRequest, StepEvent, TrainOptions,
                       per_sample_seeds)
from hub.sampling import SamplerRegistry

if TYPE_CHECKING:
    from hub.core import Hub

TINY_IMAGES = dict(sample_shape=(1, 8, 8), z_dim=8, w_dim=8, mapping_layers=2, channel_base=32, channel_max=8,
                   r1_interval=2, mixing_prob=0.5, augment="translation,color")
TINY_POINTS = dict(sample_shape=(2,), z_dim=4, w_dim=8, mapping_layers=2, width=16, num_layers=2, mixing_prob=0.5)
TINY_GAN_IMAGES = dict(sample_shape=(1, 8, 8), z_dim=8, channels=16)
SEEDS = per_sample_seeds(7, 3)


def context() -> BuildContext:
    return BuildContext(samplers=SamplerRegistry())


def stylegan(**overrides: object) -> GenerativeModel:
    return StyleGANFamily().build(StyleGANConfig(**{**TINY_IMAGES, **overrides}), context())


def trained(model: GenerativeModel, dataset_name: str = "digits", steps: int = 3) -> GenerativeModel:
    dataset = load_digits("train", 8) if dataset_name == "digits" else load_grid25("train")
    model.train(dataset, TrainOptions(steps=steps, batch_size=8, learning_rate=2e-3, seed=0))
    return model


def snapshot(model: GenerativeModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("overrides", [TINY_IMAGES, TINY_POINTS], ids=["images", "points"])
def test_a_few_training_steps_give_finite_losses_and_move_every_network(overrides: dict) -> None:
    model = StyleGANFamily().build(StyleGANConfig(**overrides), context())
    before = snapshot(model)
    dataset = load_digits("train", 8) if len(overrides["sample_shape"]) == 3 else load_grid25("train")
    result = model.train(dataset, TrainOptions(steps=4, batch_size=8, learning_rate=2e-3, seed=0))
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    after = model.state_dict()
    for prefix in ("G.mapping.layers.0.weight", "G.synthesis.layers.0.conv.weight", "G_ema.synthesis.const",
                   "G.mapping.w_avg"):
        assert not torch.equal(before[prefix], after[prefix]), f"{prefix} did not move"
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("D."))
    assert int(after["train_steps"][0]) == 4


def test_training_is_deterministic_for_a_seed() -> None:
    a, b = trained(stylegan()), trained(stylegan())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_samples_depend_only_on_their_own_seed(noise_mode: str) -> None:
    model = trained(stylegan())
    params = {"noise_mode": noise_mode}
    together = model.sample(SampleRequest(seeds=SEEDS, params=params))
    assert together.shape == (3, 1, 8, 8) and float(together.abs().max()) <= 1.0
    alone = model.sample(SampleRequest(seeds=[SEEDS[1]], params=params))
    torch.testing.assert_close(alone[0], together[1], rtol=0, atol=1e-6)
    again = model.sample(SampleRequest(seeds=SEEDS, params=params))
    assert torch.equal(again, together)
    assert not torch.allclose(together[0], together[2])


def test_random_noise_mode_draws_noise_from_the_seed() -> None:
    model = trained(stylegan())
    for layer in model.G_ema.synthesis.layers:  # make the noise visible
        layer.noise_strength.data.fill_(0.5)
    const = model.sample(SampleRequest(seeds=SEEDS))
    random = model.sample(SampleRequest(seeds=SEEDS, params={"noise_mode": "random"}))
    assert not torch.allclose(const, random)


def test_psi_zero_yields_the_w_average_image_for_every_seed() -> None:
    model = trained(stylegan(), steps=4)
    G = model.G_ema
    assert float(G.mapping.w_avg.abs().sum()) > 0  # the average moved away from its initial zero
    images = model.sample(SampleRequest(seeds=per_sample_seeds(3, 5), truncation=0.0))
    with torch.no_grad():
        average = G.synthesis(G.mapping.w_avg[None, None].expand(1, G.num_ws, -1), G.noise_inputs("const")).clamp(-1, 1)
    for image in images:
        torch.testing.assert_close(image, average[0], rtol=0, atol=1e-5)
    assert not torch.allclose(model.sample(SampleRequest(seeds=SEEDS, truncation=1.0))[0], average[0])


def test_style_mixing_switches_styles_at_the_chosen_layer() -> None:
    model = trained(stylegan())
    own, other = SEEDS[0], SEEDS[2]
    plain = model.sample(SampleRequest(seeds=[own, other]))
    all_other = model.sample(SampleRequest(seeds=[own], params={"mix_seed": other, "mix_layer": 0}))
    torch.testing.assert_close(all_other[0], plain[1], rtol=0, atol=1e-6)
    none_mixed = model.sample(SampleRequest(seeds=[own], params={"mix_seed": other, "mix_layer": model.G.num_ws}))
    torch.testing.assert_close(none_mixed[0], plain[0], rtol=0, atol=1e-6)
    half = model.sample(SampleRequest(seeds=[own], params={"mix_seed": other}))
    assert not torch.allclose(half[0], plain[0]) and not torch.allclose(half[0], plain[1])
    with pytest.raises(InvalidArgument, match=r"mix_layer.*must be between 0 and \d+"):
        model.sample(SampleRequest(seeds=[own], params={"mix_seed": other, "mix_layer": 99}))


def test_sampling_reports_exactly_one_step_and_can_be_cancelled() -> None:
    model = stylegan()
    events: list[StepEvent] = []
    model.sample(SampleRequest(seeds=SEEDS, preview_every=1), events.append)
    assert [(e.step, e.total) for e in events] == [(1, 1)]
    assert events[0].preview is not None and events[0].preview.shape == (3, 1, 8, 8)
    with pytest.raises(Cancelled, match="step 1 of 1"):
        model.sample(SampleRequest(seeds=SEEDS), lambda event: False)


def test_diffusion_only_request_fields_are_rejected_with_the_fix() -> None:
    model = stylegan()
    with pytest.raises(InvalidArgument, match="exactly 1 step"):
        model.sample(SampleRequest(seeds=SEEDS, steps=50))
    with pytest.raises(InvalidArgument, match="no samplers"):
        model.sample(SampleRequest(seeds=SEEDS, sampler="ddim"))
    with pytest.raises(InvalidArgument, match=r"unknown parameter 'mix'.*mix_seed"):
        model.sample(SampleRequest(seeds=SEEDS, params={"mix": 1}))
    with pytest.raises(InvalidArgument, match="noise_mode"):
        model.sample(SampleRequest(seeds=SEEDS, params={"noise_mode": "loud"}))


@pytest.mark.parametrize("family,overrides", [("stylegan", TINY_IMAGES), ("stylegan", TINY_POINTS),
                                              ("gan", dict(sample_shape=(2,), width=16, num_layers=2)),
                                              ("gan", TINY_GAN_IMAGES), ("gan", {**TINY_GAN_IMAGES, "ema_decay": 0.9})])
def test_weights_round_trip_through_safetensors(tmp_path: Path, family: str, overrides: dict) -> None:
    fam = StyleGANFamily() if family == "stylegan" else GANFamily()
    model = fam.build(fam.config_class(**overrides), context())
    trained(model, "digits" if len(overrides["sample_shape"]) == 3 else "grid", steps=2)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    fresh = fam.build(fam.config_class.from_json(model.config.to_json()), context())
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    assert torch.equal(fresh.sample(SampleRequest(seeds=SEEDS)), model.sample(SampleRequest(seeds=SEEDS)))
    wrong = fam.build(fam.config_class(**{**overrides, "z_dim": 5}), context())
    with pytest.raises(InvalidArgument, match="do not fit this config"):
        wrong.load_state_dict(model.state_dict())


def test_plain_gan_trains_samples_per_seed_and_has_no_truncation() -> None:
    model = GANFamily().build(GANConfig(sample_shape=(2,), width=16, num_layers=2), context())
    before = snapshot(model)
    result = model.train(load_grid25("train"), TrainOptions(steps=5, batch_size=16, learning_rate=1e-3, seed=0))
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert not torch.equal(before["G.net.0.weight"], model.state_dict()["G.net.0.weight"])
    together = model.sample(SampleRequest(seeds=SEEDS))
    torch.testing.assert_close(model.sample(SampleRequest(seeds=SEEDS[2:]))[0], together[2], rtol=0, atol=1e-6)
    with pytest.raises(InvalidArgument, match="has no truncation"):
        model.sample(SampleRequest(seeds=SEEDS, truncation=0.5))


def test_plain_gan_samples_its_live_generator_unless_the_ema_is_on() -> None:
    # Off (the default, and every config saved before the option): no G_ema, the shipped gan-grid25 loads, G samples.
    shipped = Path(genhub_stylegan.__file__).parent / "pretrained" / "gan-grid25"
    config = GANConfig.from_json(json.dumps(json.loads((shipped / "card.json").read_text())["config"]))
    old = GANFamily().build(config, context())
    old.load_state_dict(load_file(str(shipped / "model.safetensors")))
    assert config.ema_decay == 0.0 and not any(k.startswith("G_ema.") for k in old.state_dict())
    z = NoiseSource(SEEDS, torch.device("cpu")).randn(config.z_dim)
    assert torch.equal(old.sample(SampleRequest(seeds=SEEDS)), old.G(z))
    # On: the EMA moves with training but lags the live G, samples, and is saved beside G and D.
    live, averaged = (trained(GANFamily().build(GANConfig(**TINY_GAN_IMAGES, ema_decay=d), context()), steps=3)
                      for d in (0.0, 0.9))
    assert all(torch.equal(v, averaged.state_dict()[k]) for k, v in live.state_dict().items())  # same training
    z = NoiseSource(SEEDS, torch.device("cpu")).randn(8)
    with torch.no_grad():
        assert torch.equal(averaged.sample(SampleRequest(seeds=SEEDS)), averaged.G_ema(z))
        assert not torch.allclose(averaged.G_ema(z), averaged.G(z))
    weights = averaged.state_dict()
    assert not torch.equal(weights["G_ema.fc.weight"], weights["G.fc.weight"])
    initial = GANFamily().build(GANConfig(**TINY_GAN_IMAGES, ema_decay=0.9), context()).state_dict()
    assert not torch.equal(weights["G_ema.fc.weight"], initial["G_ema.fc.weight"])
    with pytest.raises(InvalidArgument, match="ema_decay"):
        GANConfig(ema_decay=1.0)


def test_configs_reject_bad_shapes_with_the_fix() -> None:
    with pytest.raises(InvalidArgument, match="power of 2.*digits16"):
        StyleGANConfig(sample_shape=(1, 12, 12))
    with pytest.raises(InvalidArgument, match="augmentation"):
        StyleGANConfig(augment="flip")
    assert StyleGANFamily().default_config(load_grid25("train")).sample_shape == (2,)


def test_both_families_train_register_and_generate_through_the_hub(hub: Hub) -> None:
    assert {"stylegan", "gan"} <= set(hub.parts.families)
    options = TrainOptions(steps=2, batch_size=8, learning_rate=2e-3, seed=0)
    small = {k: v for k, v in TINY_IMAGES.items() if k != "sample_shape"}
    version = hub.train("stylegan", "digits", model_name="sg", options=options, config_overrides=small)
    hub.train("gan", "gmm-grid25", model_name="g", options=options, config_overrides={"width": 16, "num_layers": 2})
    events: list[StepEvent] = []
    generation = hub.generate("sg", SampleRequest.from_seed(0, 4, truncation=0.7), events.append)
    assert generation.samples.shape == (4, 1, 8, 8) and len(events) == 1
    assert hub.generate("g:1", SampleRequest.from_seed(0, 4)).samples.shape == (4, 2)
    assert version.config["z_dim"] == 8


def test_point_discriminator_can_see_fourier_features_and_old_configs_keep_raw_coordinates() -> None:
    raw = StyleGANFamily().build(StyleGANConfig(**TINY_POINTS), context())
    assert StyleGANConfig.from_json(json.dumps({"sample_shape": [2]})).d_fourier_octaves == 0  # shipped configs
    assert raw.D.body[0].weight.shape[1] == 2
    model = trained(StyleGANFamily().build(StyleGANConfig(**TINY_POINTS, d_fourier_octaves=3), context()), "grid", 2)
    assert model.D.body[0].weight.shape[1] == 2 * (1 + 2 * 3)  # x, y, then sin and cos at 3 octaves each
    assert torch.isfinite(model.D(torch.randn(8, 2))).all()
    with pytest.raises(InvalidArgument, match="d_fourier_octaves"):
        StyleGANConfig(**TINY_POINTS, d_fourier_octaves=17)


def test_the_mapping_network_can_see_fourier_features_of_z_and_old_configs_keep_raw_z() -> None:
    assert StyleGANConfig.from_json(json.dumps({"sample_shape": [2]})).g_fourier_octaves == 0  # shipped configs
    raw = StyleGANFamily().build(StyleGANConfig(**TINY_POINTS), context())
    assert raw.G.mapping.layers[0].weight.shape[1] == 4  # z_dim: the unchanged default network
    model = trained(StyleGANFamily().build(StyleGANConfig(**TINY_POINTS, g_fourier_octaves=3), context()), "grid", 2)
    assert model.G.mapping.layers[0].weight.shape[1] == 4 * (1 + 2 * 3)  # z, then sin and cos at 3 octaves each
    assert torch.isfinite(model.G(torch.randn(8, 4))).all()
    with pytest.raises(InvalidArgument, match="g_fourier_octaves"):
        StyleGANConfig(**TINY_POINTS, g_fourier_octaves=-1)


@pytest.mark.parametrize("overrides", [TINY_IMAGES, TINY_POINTS], ids=["images", "points"])
def test_a_packing_discriminator_judges_samples_together_and_trains(overrides: dict) -> None:
    assert StyleGANConfig.from_json(json.dumps({"sample_shape": [2]})).pack == 1  # shipped configs: one at a time
    # mbstd_group=1: no minibatch-std feature, which would couple every pack in the batch
    model = StyleGANFamily().build(StyleGANConfig(**{**overrides, "mbstd_group": 1}, pack=2), context())
    images = len(overrides["sample_shape"]) == 3
    first = model.D.from_rgb.weight if images else model.D.body[0].weight
    assert first.shape[1] == 2 * (1 if images else 2)  # two samples' channels / coordinates side by side
    x = torch.randn(8, *overrides["sample_shape"])
    logits = model.D(x)
    assert logits.shape == (4,)
    x[1] += 1.0  # the second sample of the first pack changes that pack's logit only
    moved = model.D(x) != logits
    assert moved[0] and not moved[1:].any()
    result = model.train(load_digits("train", 8) if images else load_grid25("train"),
                         TrainOptions(steps=2, batch_size=8, learning_rate=2e-3, seed=0))
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_bad_packing_is_refused_with_the_field_named() -> None:
    for bad in (0, 17):
        with pytest.raises(InvalidArgument, match="pack"):
            StyleGANConfig(**TINY_POINTS, pack=bad)
    model = StyleGANFamily().build(StyleGANConfig(**TINY_POINTS, pack=3), context())
    with pytest.raises(InvalidArgument, match="batch_size.*multiple of 3"):
        model.train(load_grid25("train"), TrainOptions(steps=1, batch_size=8, learning_rate=2e-3, seed=0))
