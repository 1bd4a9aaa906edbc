"""End to end through the real DDPM family (plugins/ddpm): train a tiny one, generate over gRPC."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hub.client import Client, RemoteGeneration, StepProgress
from hub.model import SampleRequest, TrainOptions
from hub.server.app import BackgroundServer
from tests.server.harness import TinyHub

MODEL = "ddpm-tiny-digits"
TINY = dict(base_channels=8, channel_mults=[1], num_timesteps=50, default_steps=5)


@pytest.fixture(scope="module")
def ddpm(tiny: TinyHub) -> Any:
    assert "ddpm" in tiny.hub.parts.families, "the DDPM plugin is not installed: pip install -e plugins/ddpm"
    return tiny.hub.train("ddpm", "digits", model_name=MODEL, options=TrainOptions(steps=2, batch_size=8, seed=0),
                          config_overrides=TINY, command="tests: ddpm end to end")


def test_ddpm_over_grpc_matches_in_process_sampling(tiny: TinyHub, server: BackgroundServer, ddpm: Any) -> None:
    with server.client(timeout=120) as client:
        result = client.generate(MODEL, num_samples=3, seed=21, steps=4, sampler="ddim", class_label=7, format="tensor")
        events = list(client.stream_generate(MODEL, num_samples=2, seed=21, steps=4, sampler="ddpm", preview_every=2))
    assert result.model == f"{MODEL}:{ddpm.version}" and result.digest == ddpm.artifact_digest
    expected = tiny.hub.generate(MODEL, SampleRequest.from_seed(21, 3, sampler="ddim", steps=4, class_labels=[7] * 3), log=False)
    torch.testing.assert_close(result.samples, expected.samples, atol=1e-5, rtol=0)
    assert [e.step for e in events if isinstance(e, StepProgress)] == [1, 2, 3, 4]
    assert [e.step for e in events if isinstance(e, StepProgress) and e.previews is not None] == [2, 4]
    assert isinstance(events[-1], RemoteGeneration) and events[-1].samples.shape == (2, 1, 8, 8)
