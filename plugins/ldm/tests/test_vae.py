"""The "vae" family on tiny configs: shapes, training, the measured scale factor, weights round trip."""

from __future__ import annotations

import pytest
import torch

from hub.core import Hub
from hub.errors import InvalidArgument
from hub.model import SampleRequest, TrainOptions
from genhub_ldm.vae import VAEConfig, VAEFamily, VAEModel

TINY = {"base_channels": 8, "channel_mults": [1, 2, 2], "latent_channels": 2}


def test_downsampling_factor_four_gives_latents_a_quarter_the_size() -> None:
    vae = VAEModel(VAEConfig(sample_shape=(3, 32, 32), **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (3, 2, 8, 8) and vae.config.downsample_factor == 4
    assert vae.decode(z).shape == x.shape


def test_config_rejects_sizes_the_levels_cannot_halve() -> None:
    with pytest.raises(InvalidArgument, match="divisible by 4"):
        VAEConfig(sample_shape=(3, 30, 30))


def test_training_moves_weights_and_records_the_measured_scale_factor(hub: Hub) -> None:
    version = hub.train(
        "vae", "shapes", model_name="vae-tiny", options=TrainOptions(steps=4, batch_size=8, learning_rate=1e-3), config_overrides=TINY
    )
    scale = version.config["scale_factor"]
    assert scale != 1.0 and scale > 0  # measured from the training latents, stored in the registry
    loaded = hub.load(version.ref).model
    fresh = VAEFamily().build(VAEFamily().default_config(hub.dataset("shapes")).replace(**TINY), hub.context())
    moved = [k for k, v in fresh.state_dict().items() if not torch.equal(v, loaded.state_dict()[k])]
    assert moved  # training changed the weights that were saved
    latents = loaded.encode(hub.dataset("shapes", "test").data[:256])
    assert latents.std().item() == pytest.approx(1.0, abs=0.25)  # the scale factor whitens the latents
    out = loaded.sample(SampleRequest.from_seed(3, 2))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1.0
    assert torch.equal(out, loaded.sample(SampleRequest.from_seed(3, 2)))
