"""Serving through the real gRPC server: one progress event per sample call, params and truncation over the wire."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from hub.client import Client, RemoteGeneration, StepProgress
from hub.core import Hub
from hub.model import SampleRequest, TrainOptions
from hub.server.app import BackgroundServer

TINY = dict(z_dim=8, w_dim=8, mapping_layers=2, channel_base=32, channel_max=8)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, BackgroundServer]]:
    home: Path = tmp_path_factory.mktemp("genhub-stylegan-grpc")
    torch.set_num_threads(1)
    with Hub.open(db_url=f"sqlite:///{home}/r.db", home=home) as hub:
        options = TrainOptions(steps=2, batch_size=8, learning_rate=2e-3, seed=0)
        hub.train("stylegan", "digits", model_name="sg", options=options, config_overrides=TINY, command="tests")
        hub.train("gan", "gmm-grid25", model_name="g", options=options, config_overrides={"width": 16, "num_layers": 2},
                  command="tests")
        server = BackgroundServer(hub, "127.0.0.1:0")
        try:
            yield hub, server
        finally:
            server.stop(grace_s=1.0)


def test_stylegan_streams_exactly_one_step_and_matches_in_process_sampling(served: tuple[Hub, BackgroundServer]) -> None:
    hub, server = served
    params = {"mix_seed": 5, "mix_layer": 2}
    with server.client(timeout=120) as client:
        events = list(client.stream_generate("sg", num_samples=3, seed=4, truncation=0.5, params=params, format="tensor"))
    progress = [e for e in events if isinstance(e, StepProgress)]
    assert [(e.step, e.total) for e in progress] == [(1, 1)]
    result = events[-1]
    assert isinstance(result, RemoteGeneration) and result.samples.shape == (3, 1, 8, 8)
    expected = hub.generate("sg", SampleRequest.from_seed(4, 3, truncation=0.5, params=params), log=False)
    torch.testing.assert_close(result.samples, expected.samples, atol=1e-5, rtol=0)


def test_plain_gan_points_stream_one_step(served: tuple[Hub, BackgroundServer]) -> None:
    _, server = served
    with server.client(timeout=120) as client:
        events = list(client.stream_generate("g", num_samples=5, seed=1))
    assert [e.step for e in events if isinstance(e, StepProgress)] == [1]
    assert isinstance(events[-1], RemoteGeneration) and events[-1].samples.shape == (5, 2)
