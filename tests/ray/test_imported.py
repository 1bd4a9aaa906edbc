"""A diffusers pipeline folder imported with `genhub import diffusers` serves through Ray Serve like any model."""

from __future__ import annotations

import pytest
import torch

from hub.client import Client
from hub.errors import InvalidArgument
from hub.model import SampleRequest
from tests.ray.conftest import IMPORTED_MODEL
from tests.server.harness import TinyHub


def test_an_imported_stable_diffusion_folder_generates_on_ray_as_in_process(ray_app: str, tiny: TinyHub) -> None:
    with Client(ray_app, timeout=120) as client:
        result = client.generate(IMPORTED_MODEL, num_samples=2, seed=3, steps=4, prompt="a red circle", guidance_scale=3.0,
                                 format="tensor")
        with pytest.raises(InvalidArgument, match="prompt: is .* tokens, more than this model's"):
            client.generate(IMPORTED_MODEL, steps=2, prompt="z" * 200)
    request = SampleRequest.from_seed(3, 2, steps=4, prompts=["a red circle"] * 2, guidance_scale=3.0)
    expected = tiny.hub.generate(IMPORTED_MODEL, request, log=False).samples
    assert result.model == f"{IMPORTED_MODEL}:1" and result.samples.shape == (2, 3, 16, 16)
    torch.testing.assert_close(result.samples, expected, atol=1e-4, rtol=0)
