"""Serving through the real gRPC server: one progress event per denoising step."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from hub.client import Client, RemoteGeneration, StepProgress
from hub.core import Hub
from hub.model import SampleRequest, TrainOptions
from hub.server.app import BackgroundServer

TINY = dict(z_dim=4, emb_dim=16, base_channels=8, channel_mults=[1, 2])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, BackgroundServer]]:
    home: Path = tmp_path_factory.mktemp("genhub-ddgan-grpc")
    torch.set_num_threads(1)
    with Hub.open(db_url=f"sqlite:///{home}/r.db", home=home) as hub:
        options = TrainOptions(steps=2, batch_size=8, learning_rate=1e-3, seed=0)
        hub.train("ddgan", "digits", model_name="dd", options=options, config_overrides=TINY, command="tests")
        server = BackgroundServer(hub, "127.0.0.1:0")
        try:
            yield hub, server
        finally:
            server.stop(grace_s=1.0)


def test_ddgan_streams_one_event_per_step_with_previews(served: tuple[Hub, BackgroundServer]) -> None:
    hub, server = served
    with server.client(timeout=120) as client:
        events = list(client.stream_generate("dd", num_samples=2, seed=9, preview_every=2, format="tensor"))
    progress = [e for e in events if isinstance(e, StepProgress)]
    assert [(e.step, e.total) for e in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [e.step for e in progress if e.previews is not None] == [2, 4]
    result = events[-1]
    assert isinstance(result, RemoteGeneration) and result.samples.shape == (2, 1, 8, 8)
    expected = hub.generate("dd", SampleRequest.from_seed(9, 2), log=False)
    torch.testing.assert_close(result.samples, expected.samples, atol=1e-5, rtol=0)


def test_closing_the_stream_early_cancels_the_call(served: tuple[Hub, BackgroundServer]) -> None:
    _, server = served
    with server.client(timeout=120) as client:
        stream = client.stream_generate("dd", num_samples=2, seed=9)
        first = next(stream)
        stream.close()
        assert isinstance(first, StepProgress) and first.step == 1
        assert client.generate("dd", num_samples=1, seed=3).samples.shape == (1, 1, 8, 8)  # the server is still fine
