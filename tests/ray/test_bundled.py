"""A bundled checkpoint of every family served through Ray Serve's gRPC ingress, as `genhub serve --backend ray` serves them."""

from __future__ import annotations

import torch

from hub.client import Client
from hub.model import SampleRequest
from tests.ray.conftest import one_bundled_model_per_family
from tests.server.harness import TinyHub


def test_every_bundled_family_is_deployed_and_generates_what_it_does_in_process(ray_app: str, tiny: TinyHub) -> None:
    names = one_bundled_model_per_family(tiny.hub)
    families = {tiny.hub.parts.pretrained[n].family for n in names}
    assert {"ddpm", "ldm", "vae", "ddgan", "distill", "stylegan", "gan"} <= families, families
    assert "ldm-shapes" in names  # the prompt test below
    with Client(ray_app, timeout=120) as client:
        for name in names:
            result = client.generate(name, num_samples=2, seed=5, format="tensor")
            expected = tiny.hub.generate(name, SampleRequest.from_seed(5, 2), log=False).samples
            torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_the_latent_diffusion_model_follows_a_prompt_on_ray(ray_app: str, tiny: TinyHub) -> None:
    with Client(ray_app, timeout=120) as client:
        result = client.generate("ldm-shapes", num_samples=4, seed=2, steps=10, prompt="a red triangle, top left", format="tensor")
    expected = tiny.hub.generate("ldm-shapes", SampleRequest.from_seed(2, 4, steps=10, prompts=["a red triangle, top left"] * 4),
                                 log=False).samples
    torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0)
    assert result.model == "ldm-shapes:1"
