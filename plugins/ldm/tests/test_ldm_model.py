"""The "ldm" family on tiny configs: lineage, conditioning, guidance as one batch, samplers, previews, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from hub.core import Hub
from hub.datasets import Dataset
from hub.errors import InvalidArgument, NotFound
from hub.model import SampleRequest, StepEvent, TrainOptions

TINY_VAE = {"base_channels": 8, "channel_mults": [1, 2, 2], "latent_channels": 2}
TINY_LDM = {"base_channels": 8, "context_dim": 16, "heads": 2, "latent_shape": [2, 8, 8]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str, str]]:
    torch.set_num_threads(1)
    home: Path = tmp_path_factory.mktemp("genhub-ldm")
    with Hub.open(home=home) as hub:
        vae = hub.train("vae", "shapes", model_name="vae-tiny", options=TrainOptions(steps=3, batch_size=8, learning_rate=1e-3),
                        config_overrides=TINY_VAE)
        ldm = hub.train("ldm", "shapes", model_name="ldm-tiny", parent=vae.ref,
                        options=TrainOptions(steps=3, batch_size=8, learning_rate=1e-3), config_overrides=TINY_LDM)
        yield hub, vae.ref, ldm.ref


def test_the_denoiser_records_its_autoencoder_as_parent_and_pins_it(trained: tuple[Hub, str, str]) -> None:
    hub, vae_ref, ldm_ref = trained
    version = hub.resolve(ldm_ref)
    assert version.parent == vae_ref
    assert version.config["autoencoder"] == vae_ref
    vocabulary = version.config["text_settings"]["vocabulary"]
    assert {"red", "circle", "top", "left", "triangle"} <= set(vocabulary)  # fitted on the captions
    assert version.config["extra"]["scale_factor"] == hub.resolve(vae_ref).config["scale_factor"]


def test_samples_are_images_and_depend_only_on_their_seed(trained: tuple[Hub, str, str]) -> None:
    hub, _, ref = trained
    model = hub.load(ref).model
    request = SampleRequest.from_seed(5, 3, steps=4, prompts=["a red circle, top left"] * 3)
    out = model.sample(request)
    assert out.shape == (3, 3, 32, 32) and out.abs().max() <= 1.0
    assert torch.equal(out, model.sample(request))
    one = model.sample(SampleRequest(seeds=request.seeds[1:2], steps=4, prompts=["a red circle, top left"]))
    assert torch.allclose(one[0], out[1], atol=1e-5)


def test_class_labels_mean_their_class_names(trained: tuple[Hub, str, str]) -> None:
    hub, _, ref = trained
    model = hub.load(ref).model
    names = hub.dataset("shapes").class_names
    by_label = model.sample(SampleRequest.from_seed(1, 2, steps=3, class_labels=[7, 30], guidance_scale=2.0))
    by_text = model.sample(SampleRequest.from_seed(1, 2, steps=3, prompts=[names[7], names[30]], guidance_scale=2.0))
    assert torch.equal(by_label, by_text)


def test_guidance_runs_conditional_and_unconditional_halves_as_one_forward_pass(trained: tuple[Hub, str, str]) -> None:
    hub, _, ref = trained
    model = hub.load(ref).model
    batches: list[int] = []
    handle = model.ema.unet.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    try:
        model.sample(SampleRequest.from_seed(0, 3, steps=4, prompts=["a blue square, bottom right"] * 3, guidance_scale=3.0))
        guided = list(batches)
        batches.clear()
        model.sample(SampleRequest.from_seed(0, 3, steps=4, prompts=["a blue square, bottom right"] * 3, guidance_scale=1.0))
    finally:
        handle.remove()
    assert guided == [6] * 4  # one pass per step over [cond; uncond]
    assert batches == [3] * 4  # guidance 1 is plain conditional sampling


def test_any_registered_sampler_works_and_previews_are_decoded_images(trained: tuple[Hub, str, str]) -> None:
    hub, _, ref = trained
    model = hub.load(ref).model
    for sampler in ("ddpm", "ddim"):
        events: list[StepEvent] = []
        out = model.sample(SampleRequest.from_seed(2, 2, sampler=sampler, steps=3, preview_every=1, prompts=["a green triangle, top right"] * 2),
                           events.append)
        assert [e.step for e in events] == [1, 2, 3]
        assert all(e.preview is not None and e.preview.shape == out.shape for e in events)  # decoded, not latents


def test_bad_requests_name_the_field(trained: tuple[Hub, str, str]) -> None:
    hub, _, ref = trained
    model = hub.load(ref).model
    cases = [
        (dict(prompts=["a purple circle"]), "prompt"),
        (dict(prompts=["a red circle"], class_labels=[0]), "prompts"),
        (dict(class_labels=[48]), "class_labels"),
        (dict(guidance_scale=2.0), "guidance_scale"),
        (dict(truncation=0.5), "truncation"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgument) as err:
            model.sample(SampleRequest.from_seed(0, 1, steps=2, **kwargs))
        assert err.value.field == field, kwargs
    with pytest.raises(NotFound, match="no sampler named 'euler'"):
        model.sample(SampleRequest.from_seed(0, 1, sampler="euler"))


def test_the_text_encoder_is_chosen_by_name(trained: tuple[Hub, str, str]) -> None:
    hub, vae_ref, _ = trained
    version = hub.train("ldm", "shapes", model_name="ldm-chargram", parent=vae_ref,
                        options=TrainOptions(steps=2, batch_size=8, learning_rate=1e-3),
                        config_overrides={**TINY_LDM, "text_encoder": "chargram"})
    model = hub.load(version.ref).model
    out = model.sample(SampleRequest.from_seed(0, 1, steps=2, prompts=["a purple hexagon"]))  # any word goes
    assert out.shape == (1, 3, 32, 32)
    with pytest.raises(NotFound, match="no text encoder named 'bert'.*chargram.*vocab"):
        hub.train("ldm", "shapes", model_name="ldm-bert", parent=vae_ref, options=TrainOptions(steps=1, batch_size=4),
                  config_overrides={**TINY_LDM, "text_encoder": "bert"})



def _net_weights(hub: Hub, vae_ref: str, steps: int, lr: float, **overrides: object) -> dict[str, torch.Tensor]:
    """The trained net of a tiny ldm on 32 shapes (encoding the whole split would cost most of the test)."""
    full = hub.dataset("shapes")
    few = Dataset(name=full.name, split=full.split, data=full.data[:32], labels=full.labels[:32], class_names=full.class_names)
    _, model = hub.build("ldm", {**TINY_LDM, "autoencoder": vae_ref, "class_names": full.class_names, **overrides})
    model.train(few, TrainOptions(steps=steps, batch_size=8, learning_rate=lr))
    return {k: v for k, v in model.state_dict().items() if k.startswith("net.")}


def test_min_snr_weighting_and_the_lr_schedule_change_training_only_when_set(trained: tuple[Hub, str, str]) -> None:
    hub, vae_ref, ref = trained
    assert {k: hub.resolve(ref).config[k] for k in ("snr_gamma", "lr_warmup", "lr_decay")} == {
        "snr_gamma": 0.0, "lr_warmup": 0, "lr_decay": "constant"}  # the defaults: plain MSE at a constant rate, as before
    plain = _net_weights(hub, vae_ref, 2, 1e-3)
    # a gamma above every timestep's SNR (at most ~1e4 here) weighs all alike: the plain loss again
    uncapped = _net_weights(hub, vae_ref, 2, 1e-3, snr_gamma=1e6)
    capped = _net_weights(hub, vae_ref, 2, 1e-3, snr_gamma=1.0)
    assert all(torch.allclose(plain[k], uncapped[k], atol=1e-6) for k in plain)
    assert not all(torch.allclose(plain[k], capped[k], atol=1e-6) for k in plain)
    # linear decay over 2 steps: step 1 at half the rate, step 2 at zero, so the same net as 1 step at half the rate
    decayed = _net_weights(hub, vae_ref, 2, 1e-3, lr_decay="linear")
    half = _net_weights(hub, vae_ref, 1, 5e-4)
    assert all(torch.allclose(decayed[k], half[k], atol=1e-6) for k in half)
    assert not all(torch.allclose(plain[k], half[k], atol=1e-6) for k in half)
    for bad, field in (({"snr_gamma": -1.0}, "snr_gamma"), ({"lr_decay": "step"}, "lr_decay"), ({"lr_warmup": -5}, "lr_warmup")):
        with pytest.raises(InvalidArgument) as err:
            _net_weights(hub, vae_ref, 1, 1e-3, **bad)
        assert err.value.field == field
