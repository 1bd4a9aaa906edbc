"""Step-level batching through a real server: short requests do not wait behind a long one."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch

from hub.core import model_key
from hub.client import Client, RemoteGeneration
from hub.model import SampleRequest, TrainOptions
from tests.server.harness import TinyHub, running_server, wait_for

DDPM_MODEL = "tiny-ddpm"
ATOL = 1e-5


@pytest.fixture(scope="module")
def ddpm(tiny: TinyHub) -> str:
    """A tiny real DDPM (1x8x8 digits, a two-level UNet of width 8, 1,000 timesteps), trained one step."""
    tiny.hub.train("ddpm", "digits", model_name=DDPM_MODEL, options=TrainOptions(steps=1, batch_size=8),
                   config_overrides=dict(base_channels=8, channel_mults=[1, 2], num_timesteps=1000, default_steps=10),
                   command="tests: step batching")
    return DDPM_MODEL


def test_ten_short_requests_sent_after_a_1000_step_one_finish_before_it(tiny: TinyHub, ddpm: str) -> None:
    finished: dict[str, float] = {}
    with running_server(tiny) as server, server.client(timeout=120) as client:
        stream = client.stream_generate(ddpm, seed=1, sampler="ddpm", steps=1000, format="tensor")
        assert next(stream).step >= 1  # the long request is sampling

        def read_long() -> Any:
            events = list(stream)
            finished["long"] = time.monotonic()
            return events[-1]

        reader = ThreadPoolExecutor(1)
        long_result = reader.submit(read_long)

        def short(seed: int) -> RemoteGeneration:
            result = client.generate(ddpm, seed=seed, sampler="ddim", steps=10, format="tensor")
            finished[f"short {seed}"] = time.monotonic()
            return result

        with ThreadPoolExecutor(10) as pool:
            shorts = list(pool.map(short, range(10)))
        long = long_result.result(timeout=600)
        reader.shutdown()
    assert isinstance(long, RemoteGeneration) and long.samples.shape == (1, 1, 8, 8)
    assert max(t for k, t in finished.items() if k != "long") < finished["long"], finished
    assert all(s.batch_samples >= 2 for s in shorts)  # each shared its passes with the long request
    model = tiny.hub.load(ddpm).model
    for seed, result in enumerate(shorts):  # and got what it gets alone
        alone = model.sample(SampleRequest.from_seed(seed, 1, sampler="ddim", steps=10))
        torch.testing.assert_close(result.samples, alone, atol=ATOL, rtol=0)


def test_loaded_models_are_an_lru_and_an_evicted_model_is_freed(tmp_path: Path) -> None:
    from tests.server.harness import IMAGE_MODEL, POINTS_MODEL, open_tiny_hub

    # A hub of its own: the session's shared server would hold the same loaded model through the shared hub.
    tiny = open_tiny_hub(tmp_path / "home", bundled=False)
    try:
        with running_server(tiny, max_loaded_models=1) as server, server.client(timeout=60) as client:
            client.generate(IMAGE_MODEL, seed=1, steps=2)
            generation = server.handle.generation
            version = tiny.hub.resolve(IMAGE_MODEL)
            key = model_key(version)
            first = weakref.ref(server.run(lambda: generation.models.get(key)))
            client.generate(POINTS_MODEL, seed=1, steps=2)  # loading it evicts the idle image model
            assert server.run(lambda: (key in generation.models, key in server.handle.engine.lanes)) == (False, False)
            # nothing keeps it once the finished calls' frames are gone (the hub's cache, the lane and the LRU let go)
            wait_for(lambda: gc.collect() >= 0 and first() is None, timeout=60, what="the evicted model to be freed")
            assert client.generate(IMAGE_MODEL, seed=1, steps=2, format="tensor").samples.shape == (1, 1, 8, 8)  # loads again
    finally:
        tiny.hub.close()
